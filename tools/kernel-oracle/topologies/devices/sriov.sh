# SR-IOV: an NVMe physical function with two virtual functions (the
# initramfs writes sriov_totalvfs into sriov_numvfs before asking the kernel).
# QEMU's NVMe SR-IOV needs a subsystem and forbids a CMB on the PF, so the VFs
# and the PF are clients only; the providers are NVMe with a CMB:
#   RP1 00:02.0 -> USP -> DSP1 -> PF (no CMB) + VF1, VF2
#                      -> DSP2 -> NVMe G1
#   RP2 00:03.0 -> NVMe G2
#   00:05.0 NVMe G3 on the root bus
N=cmb_size_mb=16
QEMU_DEVICES="
 -device nvme-subsys,id=subsys0,nqn=oracle-sriov
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device x3130-upstream,id=usp,bus=rp1
 -device xio3130-downstream,id=dsp1,bus=usp,addr=0x0,chassis=2,slot=0
 -device xio3130-downstream,id=dsp2,bus=usp,addr=0x1,chassis=3,slot=0
 -device nvme,serial=PF,subsys=subsys0,bus=dsp1,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2
 -device nvme,serial=G1,bus=dsp2,$N
 -device pcie-root-port,id=rp2,bus=pcie.0,addr=0x3,chassis=4,slot=1
 -device nvme,serial=G2,bus=rp2,$N
 -device nvme,serial=G3,bus=pcie.0,addr=0x5,$N
"
