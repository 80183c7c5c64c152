# SPDX-License-Identifier: GPL-2.0
# rust/vendor/Makefile, included by rust/Makefile: dmaspace and its
# dependencies as kernel crates, built like zerocopy (see rust/Makefile), linked
# into vmlinux, their symbols exported to modules through rust/exports.c.
# Copied here by dmaspace's tools/kernel-driver/vendor.sh.

obj-$(CONFIG_RUST) += bitflags.o dmaspace_pci.o dmaspace.o dmaspace_kernel.o
always-$(CONFIG_RUST) += exports_bitflags_generated.h \
    exports_dmaspace_pci_generated.h exports_dmaspace_generated.h \
    exports_dmaspace_kernel_generated.h

# dmaspace is edition 2024: the common --edition=2021 is dropped (as for
# core), and any warning is an error: the crate is clean under the kernel's lints.
bitflags-flags := --cap-lints=allow
dmaspace_pci-flags := --edition=2024 -Dwarnings --extern bitflags
dmaspace-flags := --edition=2024 -Dwarnings --extern dmaspace_pci --extern bitflags \
    --extern zerocopy --extern zerocopy_derive

$(obj)/bitflags.o: private skip_clippy = 1
$(obj)/bitflags.o: private rustc_target_flags = $(bitflags-flags)
$(obj)/bitflags.o: $(src)/vendor/bitflags/src/lib.rs $(obj)/compiler_builtins.o FORCE
	+$(call if_changed_rule,rustc_library)

$(obj)/dmaspace_pci.o: private skip_flags = --edition=2021
$(obj)/dmaspace_pci.o: private rustc_target_flags = $(dmaspace_pci-flags)
$(obj)/dmaspace_pci.o: $(src)/vendor/dmaspace-pci/src/lib.rs $(obj)/bitflags.o FORCE
	+$(call if_changed_rule,rustc_library)

$(obj)/dmaspace.o: private skip_flags = --edition=2021
$(obj)/dmaspace.o: private rustc_target_flags = $(dmaspace-flags)
$(obj)/dmaspace.o: $(src)/vendor/dmaspace/src/lib.rs $(obj)/dmaspace_pci.o \
    $(obj)/bitflags.o $(obj)/zerocopy.o $(obj)/$(libzerocopy_derive_name) FORCE
	+$(call if_changed_rule,rustc_library)

# The seam over kernel::dma (this repository's kernel/lib.rs): a kernel crate
# on top of `kernel` and `dmaspace`, flags as kernel.o's.
$(obj)/dmaspace_kernel.o: private rustc_target_flags = -Dwarnings --extern ffi \
    --extern pin_init --extern build_error --extern macros --extern bindings \
    --extern uapi --extern zerocopy --extern zerocopy_derive --extern kernel \
    --extern dmaspace
$(obj)/dmaspace_kernel.o: $(src)/vendor/dmaspace-kernel/lib.rs $(obj)/kernel.o \
    $(obj)/dmaspace.o FORCE
	+$(call if_changed_rule,rustc_library)

$(obj)/exports_bitflags_generated.h: $(obj)/bitflags.o FORCE
	$(call if_changed,exports)
$(obj)/exports_dmaspace_pci_generated.h: $(obj)/dmaspace_pci.o FORCE
	$(call if_changed,exports)
$(obj)/exports_dmaspace_generated.h: $(obj)/dmaspace.o FORCE
	$(call if_changed,exports)

$(obj)/exports_dmaspace_kernel_generated.h: $(obj)/dmaspace_kernel.o FORCE
	$(call if_changed,exports)

$(obj)/exports.o: $(obj)/exports_bitflags_generated.h \
    $(obj)/exports_dmaspace_pci_generated.h $(obj)/exports_dmaspace_generated.h \
    $(obj)/exports_dmaspace_kernel_generated.h
