# ACS redirect in several flavours, set through pci=config_acs= (see
# ACS_CMDLINE). Flags read right to left: bit0 SV, bit1 TB, bit2 RR, bit3 CR,
# bit4 UF, bit5 EC; 1 sets, 0 clears, x leaves the bit alone.
#   RP1 00:02.0 RR        -> NVMe K1
#   RP2 00:03.0 CR        -> USP -> DSP1 -> NVMe K2, DSP2 -> NVMe K3 (ACS above the common ancestor)
#   RP3 00:04.0 EC asked  -> NVMe K4 two functions (00.0, 00.1). QEMU's pcie-root-port
#                            ACS capability is 0x5f (SV TB RR CR UF DT, no EC), so the
#                            kernel's write of EC is dropped and the control register
#                            stays 0: the verdict follows the register, not the command line.
#   RP4 00:05.0 SV+UF     -> NVMe K5 two functions (no redirect bit: must not count)
#   RP5 00:06.0 none      -> NVMe K6
#   00:07.0 NVMe K7 on the root bus
N=cmb_size_mb=16
ACS_CMDLINE="pci=config_acs=1xx@0000:00:02.0;1xxx@0000:00:03.0;1xxxxx@0000:00:04.0;1xxx1@0000:00:05.0"
QEMU_DEVICES="
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device nvme,serial=K1,bus=rp1,$N
 -device pcie-root-port,id=rp2,bus=pcie.0,addr=0x3,chassis=2,slot=1
 -device x3130-upstream,id=usp,bus=rp2
 -device xio3130-downstream,id=dsp1,bus=usp,addr=0x0,chassis=3,slot=0
 -device xio3130-downstream,id=dsp2,bus=usp,addr=0x1,chassis=4,slot=0
 -device nvme,serial=K2,bus=dsp1,$N
 -device nvme,serial=K3,bus=dsp2,$N
 -device pcie-root-port,id=rp3,bus=pcie.0,addr=0x4,chassis=5,slot=1
 -device nvme,serial=K4a,bus=rp3,addr=0x0.0,multifunction=on,$N
 -device nvme,serial=K4b,bus=rp3,addr=0x0.1,$N
 -device pcie-root-port,id=rp4,bus=pcie.0,addr=0x5,chassis=6,slot=1
 -device nvme,serial=K5a,bus=rp4,addr=0x0.0,multifunction=on,$N
 -device nvme,serial=K5b,bus=rp4,addr=0x0.1,$N
 -device pcie-root-port,id=rp5,bus=pcie.0,addr=0x6,chassis=7,slot=1
 -device nvme,serial=K6,bus=rp5,$N
 -device nvme,serial=K7,bus=pcie.0,addr=0x7,$N
"
