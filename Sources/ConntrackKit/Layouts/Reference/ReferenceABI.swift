import CLibBPF

/// The map ABI this ctctl speaks (bpf/include/ctctl_abi.h).
public let mapABIVersion = CTCTL_ABI_VERSION

public let mapDefaultCTEntries = CTCTL_CT_DEFAULT_ENTRIES
