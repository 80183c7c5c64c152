// SPDX-License-Identifier: GPL-2.0
/*
 * p2p_oracle: ask the running kernel for its own PCI P2PDMA verdicts.
 *
 * For every ordered pair (provider, client) of PCI functions it records
 *   pci_p2pdma_distance(provider, &client->dev, false)
 * and, for every provider that has published P2P memory (pci_has_p2pmem),
 * it allocates one page of that memory, builds a one-entry scatterlist and
 * maps it for the client with dma_map_sgtable() (the sg_table wrapper of
 * dma_map_sg() that keeps the error code) to observe the map type the DMA
 * layer really chose:
 *   mapped, sg_dma_is_bus_address() set   -> bus_addr
 *   mapped, flag clear                   -> thru_host_bridge
 *   refused with -EREMOTEIO              -> not_supported
 *   any other error                      -> error (not an observation)
 *
 * The report is printed on the console between P2P_ORACLE_BEGIN and
 * P2P_ORACLE_END and is also readable from /proc/p2p_oracle (the initramfs
 * copies that file into the captured tree; it is the copy the decoder uses,
 * the console is the evidence).
 *
 * Line formats (one record per line, space-separated key=value):
 *   P2P_DEV bdf=D vendor=0xVVVV device=0xDDDD class=0xCCCCCC pcie_type=N
 *           acs_cap=0xOFF acs_ctrl=0xCTRL p2pmem=0|1 dma_mask=0xM
 *   P2P_DIST provider=D client=D distance=N
 *   P2P_MAP provider=D client=D result=R ret=E dma=0xA phys=0xP widened=0|1
 *   P2P_NOMAP provider=D reason=...
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>
#include <linux/dma-mapping.h>
#include <linux/scatterlist.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/vmalloc.h>
#include <linux/utsname.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 0, 0)
/*
 * pci_has_p2pmem() is static in 7.3.4 (no longer exported).  Probe the
 * provider's pool instead: a page allocated and freed at once.  That is what
 * map_one() needs (pci_p2pmem_alloc_sgl() draws from the same pool).
 */
static bool oracle_has_p2pmem(struct pci_dev *pdev)
{
	void *p = pci_alloc_p2pmem(pdev, PAGE_SIZE);

	if (!p)
		return false;
	pci_free_p2pmem(pdev, p, PAGE_SIZE);
	return true;
}
#else
#define oracle_has_p2pmem pci_has_p2pmem
#endif

#define REPORT_SIZE (4 << 20)

static char *report;
static size_t report_len;
static struct proc_dir_entry *proc_entry;

static __printf(1, 2) void out(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(report + report_len, REPORT_SIZE - report_len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (report_len + n >= REPORT_SIZE) {
		report_len = REPORT_SIZE - 1;
		return;
	}
	/* Echo the record on the console (without the trailing newline). */
	pr_info("%.*s", n, report + report_len);
	report_len += n;
}

static int pcie_type_or_minus(struct pci_dev *pdev)
{
	return pci_is_pcie(pdev) ? pci_pcie_type(pdev) : -1;
}

static void map_one(struct pci_dev *provider, struct pci_dev *client)
{
	struct device *dev = &client->dev;
	struct scatterlist *sgl;
	struct sg_table sgt = {};
	unsigned int nents = 0;
	u64 saved_mask = 0;
	int widened = 0;
	const char *result;
	int ret;

	sgl = pci_p2pmem_alloc_sgl(provider, &nents, PAGE_SIZE);
	if (!sgl) {
		out("P2P_MAP provider=%s client=%s result=error ret=%d dma=0x0 phys=0x0 widened=0\n",
		    pci_name(provider), pci_name(client), -ENOMEM);
		return;
	}
	sgt.sgl = sgl;
	sgt.orig_nents = nents;
	sgt.nents = nents;

	ret = dma_map_sgtable(dev, &sgt, DMA_BIDIRECTIONAL, 0);
	if (ret == -EIO && dev->dma_mask && *dev->dma_mask != DMA_BIT_MASK(64)) {
		/*
		 * -EIO comes from dma_direct_map_page() refusing an address
		 * above the client's DMA mask (bridges and driverless functions
		 * keep the 32-bit default).  That is about addressing, not about
		 * the P2P route: retry once with a 64-bit mask and say so.
		 */
		saved_mask = *dev->dma_mask;
		*dev->dma_mask = DMA_BIT_MASK(64);
		widened = 1;
		ret = dma_map_sgtable(dev, &sgt, DMA_BIDIRECTIONAL, 0);
	}

	if (ret == 0) {
		result = sg_dma_is_bus_address(sgt.sgl) ? "bus_addr" : "thru_host_bridge";
		out("P2P_MAP provider=%s client=%s result=%s ret=0 dma=0x%llx phys=0x%llx widened=%d\n",
		    pci_name(provider), pci_name(client), result,
		    (u64)sg_dma_address(sgt.sgl), (u64)sg_phys(sgt.sgl), widened);
		dma_unmap_sgtable(dev, &sgt, DMA_BIDIRECTIONAL, 0);
	} else {
		result = ret == -EREMOTEIO ? "not_supported" : "error";
		out("P2P_MAP provider=%s client=%s result=%s ret=%d dma=0x0 phys=0x%llx widened=%d\n",
		    pci_name(provider), pci_name(client), result, ret,
		    (u64)sg_phys(sgl), widened);
	}
	if (widened)
		*dev->dma_mask = saved_mask;

	pci_p2pmem_free_sgl(provider, sgl);
}

static int report_show(struct seq_file *m, void *v)
{
	seq_write(m, report, report_len);
	return 0;
}

static int __init p2p_oracle_init(void)
{
	struct pci_dev *pdev = NULL, **devs;
	int n = 0, i, j, cap = 0;
	u16 acs_ctrl;

	report = vzalloc(REPORT_SIZE);
	if (!report)
		return -ENOMEM;

	for_each_pci_dev(pdev)
		cap++;
	devs = kcalloc(cap + 1, sizeof(*devs), GFP_KERNEL);
	if (!devs) {
		vfree(report);
		return -ENOMEM;
	}
	pdev = NULL;
	for_each_pci_dev(pdev) {
		if (n == cap)
			break;
		devs[n++] = pci_dev_get(pdev);
	}
	if (pdev)
		pci_dev_put(pdev);

	out("P2P_ORACLE_BEGIN kernel=%s functions=%d\n", init_utsname()->release, n);

	for (i = 0; i < n; i++) {
		acs_ctrl = 0;
		if (devs[i]->acs_cap)
			pci_read_config_word(devs[i], devs[i]->acs_cap + PCI_ACS_CTRL, &acs_ctrl);
		out("P2P_DEV bdf=%s vendor=0x%04x device=0x%04x class=0x%06x pcie_type=%d acs_cap=0x%x acs_ctrl=0x%04x p2pmem=%d dma_mask=0x%llx\n",
		    pci_name(devs[i]), devs[i]->vendor, devs[i]->device, devs[i]->class,
		    pcie_type_or_minus(devs[i]), devs[i]->acs_cap, acs_ctrl,
		    oracle_has_p2pmem(devs[i]) ? 1 : 0,
		    devs[i]->dev.dma_mask ? (u64)*devs[i]->dev.dma_mask : 0ULL);
	}

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			out("P2P_DIST provider=%s client=%s distance=%d\n",
			    pci_name(devs[i]), pci_name(devs[j]),
			    pci_p2pdma_distance(devs[i], &devs[j]->dev, false));

	for (i = 0; i < n; i++) {
		if (!oracle_has_p2pmem(devs[i]))
			continue;
		for (j = 0; j < n; j++)
			map_one(devs[i], devs[j]);
	}

	out("P2P_ORACLE_END\n");

	for (i = 0; i < n; i++)
		pci_dev_put(devs[i]);
	kfree(devs);

	proc_entry = proc_create_single("p2p_oracle", 0444, NULL, report_show);
	return 0;
}

static void __exit p2p_oracle_exit(void)
{
	proc_remove(proc_entry);
	vfree(report);
}

module_init(p2p_oracle_init);
module_exit(p2p_oracle_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Print Linux's own PCI P2PDMA distances and observed map types");
