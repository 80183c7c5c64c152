# A second (and third) host bridge with pxb-pcie (ACPI describes them).
#   pcie.0: RP1 00:02.0 -> NVMe H0; NVMe H1 at 00:05.0 on the root bus
#   pxb1 (00:03.0, bus_nr 0x40, host bridge pci0000:40):
#     RPa -> NVMe X1; RPb -> USP -> DSP1 -> NVMe X2, DSP2 -> NVMe X3
#   pxb2 (00:04.0, bus_nr 0x80, host bridge pci0000:80): RPc -> NVMe Y1 two functions
N=cmb_size_mb=16
QEMU_DEVICES="
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device nvme,serial=H0,bus=rp1,$N
 -device nvme,serial=H1,bus=pcie.0,addr=0x5,$N
 -device pxb-pcie,id=pxb1,bus_nr=0x40,bus=pcie.0,addr=0x3
 -device pcie-root-port,id=rpa,bus=pxb1,addr=0x0,chassis=2,slot=1
 -device nvme,serial=X1,bus=rpa,$N
 -device pcie-root-port,id=rpb,bus=pxb1,addr=0x1,chassis=3,slot=1
 -device x3130-upstream,id=usp,bus=rpb
 -device xio3130-downstream,id=dsp1,bus=usp,addr=0x0,chassis=4,slot=0
 -device xio3130-downstream,id=dsp2,bus=usp,addr=0x1,chassis=5,slot=0
 -device nvme,serial=X2,bus=dsp1,$N
 -device nvme,serial=X3,bus=dsp2,$N
 -device pxb-pcie,id=pxb2,bus_nr=0x80,bus=pcie.0,addr=0x4
 -device pcie-root-port,id=rpc,bus=pxb2,addr=0x0,chassis=6,slot=1
 -device nvme,serial=Y1a,bus=rpc,addr=0x0.0,multifunction=on,$N
 -device nvme,serial=Y1b,bus=rpc,addr=0x0.1,$N
"
