# Devices on the root bus (no upstream bridge) next to bridges as clients.
#   00:05.0 .. 00:08.0: four NVMe on pcie.0 (integrated endpoints)
#   RP1 00:02.0 -> NVMe Q1
#   RP2 00:03.0: empty root port (a bridge with nothing below)
#   RP3 00:04.0 -> USP -> DSP (empty downstream port)
#   00:09.0: a one-NVMe-with-no-CMB (publishes no P2P memory: client only)
N=cmb_size_mb=16
QEMU_DEVICES="
 -device nvme,serial=E0,bus=pcie.0,addr=0x5,$N
 -device nvme,serial=E1,bus=pcie.0,addr=0x6,$N
 -device nvme,serial=E2,bus=pcie.0,addr=0x7,$N
 -device nvme,serial=E3,bus=pcie.0,addr=0x8,$N
 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
 -device nvme,serial=Q1,bus=rp1,$N
 -device pcie-root-port,id=rp2,bus=pcie.0,addr=0x3,chassis=2,slot=1
 -device pcie-root-port,id=rp3,bus=pcie.0,addr=0x4,chassis=3,slot=1
 -device x3130-upstream,id=usp,bus=rp3
 -device xio3130-downstream,id=dsp,bus=usp,addr=0x0,chassis=4,slot=0
 -device nvme,serial=NOCMB,bus=pcie.0,addr=0x9
"
