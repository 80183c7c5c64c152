# The brief's table, device for device:
#   00:02.0 RP1 -> 01:00.0 USP (x3130-upstream) -> 02:00.0 DSP1 -> 03:00.0 NVMe A
#                                               -> 02:01.0 DSP2 -> 04:00.0 NVMe B
#   00:03.0 RP2 -> 05:00.0 NVMe C
#   00:04.0 RP3 -> 06:00.0 NVMe D0, 06:00.1 NVMe D1 (one device, two functions)
#   00:05.0 NVMe E, 00:06.0 NVMe F (on the root bus)
# Every NVMe has a 16 MiB CMB, which the nvme driver publishes as P2P memory.
N=cmb_size_mb=16
QEMU_DEVICES="
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device x3130-upstream,id=usp,bus=rp1
 -device xio3130-downstream,id=dsp1,bus=usp,addr=0x0,chassis=2,slot=0
 -device xio3130-downstream,id=dsp2,bus=usp,addr=0x1,chassis=3,slot=0
 -device nvme,id=nvA,serial=A,bus=dsp1,$N
 -device nvme,id=nvB,serial=B,bus=dsp2,$N
 -device pcie-root-port,id=rp2,bus=pcie.0,addr=0x3,chassis=4,slot=1
 -device nvme,id=nvC,serial=C,bus=rp2,$N
 -device pcie-root-port,id=rp3,bus=pcie.0,addr=0x4,chassis=5,slot=1
 -device nvme,id=nvD0,serial=D0,bus=rp3,addr=0x0.0,multifunction=on,$N
 -device nvme,id=nvD1,serial=D1,bus=rp3,addr=0x0.1,$N
 -device nvme,id=nvE,serial=E,bus=pcie.0,addr=0x5,$N
 -device nvme,id=nvF,serial=F,bus=pcie.0,addr=0x6,$N
"
