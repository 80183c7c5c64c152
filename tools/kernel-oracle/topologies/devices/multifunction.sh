# Multi-function devices.
#   RP1 00:02.0 -> NVMe M0..M3 as functions 0-3 of one device (01:00.0-01:00.3)
#   RP2a 00:03.0 and RP2b 00:03.1: two root ports that are functions of one
#     device, each with one NVMe below
#   00:05.0 / 00:05.1 / 00:05.2: a three-function NVMe on the root bus
#   RP3 00:04.0 -> USP -> DSP -> NVMe two functions; DSP2 -> NVMe one function
N=cmb_size_mb=16
QEMU_DEVICES="
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device nvme,serial=M0,bus=rp1,addr=0x0.0,multifunction=on,$N
 -device nvme,serial=M1,bus=rp1,addr=0x0.1,$N
 -device nvme,serial=M2,bus=rp1,addr=0x0.2,$N
 -device nvme,serial=M3,bus=rp1,addr=0x0.3,$N
 -device pcie-root-port,id=rp2a,bus=pcie.0,addr=0x3.0,multifunction=on,chassis=2,slot=1
 -device pcie-root-port,id=rp2b,bus=pcie.0,addr=0x3.1,chassis=3,slot=1
 -device nvme,serial=P0,bus=rp2a,$N
 -device nvme,serial=P1,bus=rp2b,$N
 -device nvme,serial=R0,bus=pcie.0,addr=0x5.0,multifunction=on,$N
 -device nvme,serial=R1,bus=pcie.0,addr=0x5.1,$N
 -device nvme,serial=R2,bus=pcie.0,addr=0x5.2,$N
 -device pcie-root-port,id=rp3,bus=pcie.0,addr=0x4,chassis=4,slot=1
 -device x3130-upstream,id=usp,bus=rp3
 -device xio3130-downstream,id=dsp1,bus=usp,addr=0x0,chassis=5,slot=0
 -device xio3130-downstream,id=dsp2,bus=usp,addr=0x1,chassis=6,slot=0
 -device nvme,serial=W0,bus=dsp1,addr=0x0.0,multifunction=on,$N
 -device nvme,serial=W1,bus=dsp1,addr=0x0.1,$N
 -device nvme,serial=X0,bus=dsp2,$N
"
