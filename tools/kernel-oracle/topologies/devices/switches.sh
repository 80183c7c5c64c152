# Switch siblings and nested switches.
#   RP1 00:02.0 -> USP1 -> DSP1a -> NVMe S1
#                       -> DSP1b -> NVMe S2
#                       -> DSP1c -> USP2 (nested switch) -> DSP2a -> NVMe S3
#                                                        -> DSP2b -> NVMe S4
#                                                        -> DSP2c -> USP3 (third level) -> DSP3a -> NVMe S5
#   RP2 00:03.0 -> USP4 -> DSP4a -> NVMe S6   (a second, separate switch)
#                       -> DSP4b (empty downstream port)
N=cmb_size_mb=16
QEMU_DEVICES="
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device x3130-upstream,id=usp1,bus=rp1
 -device xio3130-downstream,id=dsp1a,bus=usp1,addr=0x0,chassis=2,slot=0
 -device xio3130-downstream,id=dsp1b,bus=usp1,addr=0x1,chassis=3,slot=0
 -device xio3130-downstream,id=dsp1c,bus=usp1,addr=0x2,chassis=4,slot=0
 -device nvme,serial=S1,bus=dsp1a,$N
 -device nvme,serial=S2,bus=dsp1b,$N
 -device x3130-upstream,id=usp2,bus=dsp1c
 -device xio3130-downstream,id=dsp2a,bus=usp2,addr=0x0,chassis=5,slot=0
 -device xio3130-downstream,id=dsp2b,bus=usp2,addr=0x1,chassis=6,slot=0
 -device xio3130-downstream,id=dsp2c,bus=usp2,addr=0x2,chassis=7,slot=0
 -device nvme,serial=S3,bus=dsp2a,$N
 -device nvme,serial=S4,bus=dsp2b,$N
 -device x3130-upstream,id=usp3,bus=dsp2c
 -device xio3130-downstream,id=dsp3a,bus=usp3,addr=0x0,chassis=8,slot=0
 -device nvme,serial=S5,bus=dsp3a,$N
 -device pcie-root-port,id=rp2,bus=pcie.0,addr=0x3,chassis=9,slot=1
 -device x3130-upstream,id=usp4,bus=rp2
 -device xio3130-downstream,id=dsp4a,bus=usp4,addr=0x0,chassis=10,slot=0
 -device xio3130-downstream,id=dsp4b,bus=usp4,addr=0x1,chassis=11,slot=0
 -device nvme,serial=S6,bus=dsp4a,$N
"
