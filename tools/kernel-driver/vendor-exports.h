/* SPDX-License-Identifier: GPL-2.0 */
/* rust/vendor/exports.h, included by rust/exports.c: the vendored crates'
 * symbols, for modules (see rust/vendor/Makefile). */
#include "exports_bitflags_generated.h"
#include "exports_dmaspace_pci_generated.h"
#include "exports_dmaspace_generated.h"
#include "exports_dmaspace_kernel_generated.h"
