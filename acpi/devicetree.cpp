#include "acpi/devicetree.hpp"

#include "base/try.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <libfdt.h>

namespace vsmmu::acpi::dt {
namespace {

constexpr std::string_view kSmmuCompatible = "arm,smmu-v3";
constexpr std::array<std::string_view, 5> kIrqNames = {"eventq", "priq", "cmdq-sync", "gerror", "combined"};
// GIC interrupt specifier (bindings/interrupt-controller/arm,gic.yaml): <type number flags>.
constexpr std::uint32_t kGicSpi = 0, kEdgeRising = 1, kFirstSpi = 32, kLastSpi = 1019;

std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | std::uint32_t{p[3]};
}

void push_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

std::string fdt_error(int err) { return fdt_strerror(err); }

// A property's bytes, empty when absent.
std::span<const std::uint8_t> prop(const void* fdt, int node, const char* name) {
  int len = 0;
  const void* p = fdt_getprop(fdt, node, name, &len);
  if (!p || len <= 0) return {};
  return {static_cast<const std::uint8_t*>(p), static_cast<std::size_t>(len)};
}

std::optional<std::uint32_t> prop_u32(const void* fdt, int node, const char* name) {
  auto p = prop(fdt, node, name);
  if (p.size() != 4) return std::nullopt;
  return be32(p.data());
}

std::string path_of(const void* fdt, int node) {
  std::array<char, 512> buf{};
  if (fdt_get_path(fdt, node, buf.data(), static_cast<int>(buf.size())) != 0) return "?";
  return buf.data();
}

std::uint32_t header_total_size(const std::vector<std::uint8_t>& blob) {
  // fdt_header.totalsize: big-endian, the second 32-bit word of the header.
  return blob.size() >= 8 ? be32(blob.data() + 4) : 0;
}

// Cells of `value` for a #address-cells / #size-cells count of 1 or 2.
Result<void> push_cells(std::vector<std::uint8_t>& out, std::uint64_t value, int cells, std::string_view what) {
  if (cells == 2) {
    push_be32(out, static_cast<std::uint32_t>(value >> 32));
  } else if (cells != 1 || value > 0xffffffffULL) {
    return fail(EINVAL, "dt.gen", "the {} {:#x} does not fit the root's {} cells", what, value, cells);
  }
  push_be32(out, static_cast<std::uint32_t>(value));
  return {};
}

class Writer {
 public:
  Result<void> open(std::span<const std::uint8_t> base, std::size_t extra) {
    buf_.assign(base.size() + extra + 4096, 0);
    const int err = base.empty() ? fdt_create_empty_tree(buf_.data(), static_cast<int>(buf_.size()))
                                 : fdt_open_into(base.data(), buf_.data(), static_cast<int>(buf_.size()));
    if (err) return fail(EINVAL, "dt.gen", "cannot open the base device tree: {}", fdt_error(err));
    return {};
  }
  void* fdt() { return buf_.data(); }
  Result<void> check(int err, std::string_view what) {
    if (err < 0) return fail(EINVAL, "dt.gen", "{}: {}", what, fdt_error(err));
    return {};
  }
  Result<std::vector<std::uint8_t>> finish() {
    VSMMU_TRY(check(fdt_pack(fdt()), "packing the tree"));
    buf_.resize(header_total_size(buf_));
    return std::move(buf_);
  }

 private:
  std::vector<std::uint8_t> buf_;
};

Result<int> find_or_make_host(void* fdt, bool fresh, const std::string& path) {
  if (!fresh) {
    const int node = path.empty() ? fdt_node_offset_by_compatible(fdt, -1, "pci-host-ecam-generic")
                                  : fdt_path_offset(fdt, path.c_str());
    if (node < 0)
      return fail(ENOENT, "dt.gen", "{}: {}; name the PCIe host node with --pcie PATH",
                  path.empty() ? std::string("no node is compatible with \"pci-host-ecam-generic\"")
                               : fmt::format("no node at {}", path),
                  fdt_error(node));
    return node;
  }
  // A new tree gets a placeholder host node that only carries the iommu-map.
  const std::string p = path.empty() ? "/pcie" : path;
  if (p.size() < 2 || p[0] != '/' || p.find('/', 1) != std::string::npos)
    return fail(EINVAL, "dt.gen", "in a new tree the PCIe host must be a child of the root (\"/pcie@...\"), not {}", p);
  const int node = fdt_add_subnode(fdt, 0, p.c_str() + 1);
  if (node < 0) return fail(EINVAL, "dt.gen", "cannot add {}: {}", p, fdt_error(node));
  return node;
}

Result<void> check_interrupt_parent(const void* fdt) {
  const auto parent = prop_u32(fdt, 0, "interrupt-parent");
  if (!parent)
    return fail(EINVAL, "dt.gen",
                "the root node has no interrupt-parent, so the SMMU's interrupts would have no controller to "
                "belong to");
  const int gic = fdt_node_offset_by_phandle(fdt, *parent);
  const auto cells = gic >= 0 ? prop_u32(fdt, gic, "#interrupt-cells") : std::nullopt;
  if (cells != 3u)
    return fail(EINVAL, "dt.gen",
                "the root's interrupt parent (phandle {:#x}) has {} interrupt cells; only the GIC's three-cell "
                "form is supported",
                *parent, cells ? fmt::format("{}", *cells) : std::string("no #interrupt-cells, so no"));
  return {};
}

// fdt_check_full on an aligned copy (libfdt reads header fields in place).
Result<void> check_blob(const std::vector<std::uint8_t>& copy, std::string_view where) {
  if (copy.size() < 40)
    return fail(EINVAL, std::string(where),
                "not a sound flattened device tree: {} bytes are too few (the header alone is 40)", copy.size());
  // Versions before 16 name nodes by full path; bookworm's libfdt 1.6 dereferences NULL while checking
  // such a blob (found by dt_fuzz). Linux needs version >= 16 and dtc writes 17, so refuse them first.
  // fdt_header.magic and .version: big-endian words 0 and 5.
  if (const std::uint32_t version = be32(copy.data() + 20); be32(copy.data()) == FDT_MAGIC && version < 16)
    return fail(EINVAL, std::string(where),
                "not a sound flattened device tree: format version {} predates 16, the oldest Linux reads "
                "(recompile the source with dtc)",
                version);
  if (int err = fdt_check_full(copy.data(), copy.size()); err != 0)
    return fail(EINVAL, std::string(where),
                "not a sound flattened device tree: {} (a .dtb; compile .dts files with dtc)", fdt_error(err));
  return {};
}

Result<void> check_spec(const VsmmuSpec& spec) {
  if (spec.size == 0) return fail(EINVAL, "dt.gen", "the SMMU's register frame size is 0");
  if (spec.irqs.empty())
    return fail(EINVAL, "dt.gen", "the SMMU has no interrupts; wire at least eventq and gerror (or combined)");
  for (std::size_t i = 0; i < spec.irqs.size(); ++i) {
    const auto& irq = spec.irqs[i];
    if (std::find(kIrqNames.begin(), kIrqNames.end(), irq.name) == kIrqNames.end())
      return fail(EINVAL, "dt.gen", "interrupt name '{}' is not one of eventq, priq, cmdq-sync, gerror, combined",
                  irq.name);
    if (irq.gsiv < kFirstSpi || irq.gsiv > kLastSpi)
      return fail(EINVAL, "dt.gen", "{} GSIV {} is not a GIC SPI (32-1019)", irq.name, irq.gsiv);
    for (std::size_t j = 0; j < i; ++j)
      if (spec.irqs[j].name == irq.name) return fail(EINVAL, "dt.gen", "interrupt '{}' is given twice", irq.name);
  }
  const bool combined = std::any_of(spec.irqs.begin(), spec.irqs.end(), [](const Irq& i) { return i.name == "combined"; });
  if (combined && spec.irqs.size() > 1)
    return fail(EINVAL, "dt.gen", "'combined' is the SMMU's only line when it has one; do not list it with others");
  for (const auto& m : spec.iommu_map)
    if (m.length == 0) return fail(EINVAL, "dt.gen", "an iommu-map entry at RID {:#x} covers no RIDs", m.rid_base);
  if (spec.msi_windows.empty())
    return fail(EINVAL, "dt.gen", "the reserved-memory nodes need the host's MSI window: read it from the host (the "
                "devices' reserved regions) or give it (--msi-window BASE,SIZE)");
  for (const auto& [base, size] : spec.msi_windows)
    if (size == 0 || base + size - 1 < base)
      return fail(EINVAL, "dt.gen", "the MSI window {:#x},{:#x} is empty or wraps past 2^64", base, size);
  return {};
}

// The MSI windows as reserved-memory children the PCIe host's memory-region names, each with
// iommu-addresses = <&host base size> in the host's parent's cells (of_translate_dma_region) and reg = the same
// range in /reserved-memory's cells: a 1:1 (IOMMU_RESV_DIRECT) region in the guest.
Result<void> add_msi_windows(Writer& w, const std::string& host_path, const VsmmuSpec& spec) {
  void* fdt = w.fdt();
  int host = fdt_path_offset(fdt, host_path.c_str());
  VSMMU_TRY(w.check(host, "finding the PCIe host again"));
  std::uint32_t host_phandle = fdt_get_phandle(fdt, host);
  if (host_phandle == 0) {
    VSMMU_TRY(w.check(fdt_generate_phandle(fdt, &host_phandle), "allocating a phandle for the PCIe host"));
    VSMMU_TRY(w.check(fdt_setprop_u32(fdt, host, "phandle", host_phandle), "the PCIe host's phandle"));
  }
  const int host_parent = fdt_parent_offset(fdt, host);
  VSMMU_TRY(w.check(host_parent, "the PCIe host's parent"));
  const int iova_address_cells = fdt_address_cells(fdt, host_parent), iova_size_cells = fdt_size_cells(fdt, host_parent);

  int rm = fdt_path_offset(fdt, "/reserved-memory");
  if (rm < 0) {
    const int root_address_cells = fdt_address_cells(fdt, 0), root_size_cells = fdt_size_cells(fdt, 0);
    rm = fdt_add_subnode(fdt, 0, "reserved-memory");
    VSMMU_TRY(w.check(rm, "adding /reserved-memory"));
    VSMMU_TRY(w.check(fdt_setprop_u32(fdt, rm, "#address-cells", static_cast<std::uint32_t>(root_address_cells)),
                      "/reserved-memory #address-cells"));
    VSMMU_TRY(w.check(fdt_setprop_u32(fdt, rm, "#size-cells", static_cast<std::uint32_t>(root_size_cells)),
                      "/reserved-memory #size-cells"));
    VSMMU_TRY(w.check(fdt_setprop(fdt, rm, "ranges", nullptr, 0), "/reserved-memory ranges"));
  }
  const int reg_address_cells = fdt_address_cells(fdt, rm), reg_size_cells = fdt_size_cells(fdt, rm);
  std::vector<std::uint8_t> regions;
  for (const auto& [base, size] : spec.msi_windows) {
    const std::string name = fmt::format("msi-window@{:x}", base);
    rm = fdt_path_offset(fdt, "/reserved-memory");
    if (fdt_subnode_offset(fdt, rm, name.c_str()) >= 0)
      return fail(EEXIST, "dt.gen", "the tree already has /reserved-memory/{}", name);
    std::vector<std::uint8_t> reg, iommu_addresses;
    VSMMU_TRY(push_cells(reg, base, reg_address_cells, "MSI window base"));
    VSMMU_TRY(push_cells(reg, size, reg_size_cells, "MSI window size"));
    push_be32(iommu_addresses, host_phandle);
    VSMMU_TRY(push_cells(iommu_addresses, base, iova_address_cells, "MSI window IOVA"));
    VSMMU_TRY(push_cells(iommu_addresses, size, iova_size_cells, "MSI window size"));
    std::uint32_t phandle = 0;
    VSMMU_TRY(w.check(fdt_generate_phandle(fdt, &phandle), "allocating a phandle"));
    const int node = fdt_add_subnode(fdt, rm, name.c_str());
    VSMMU_TRY(w.check(node, "adding an MSI window node"));
    VSMMU_TRY(w.check(fdt_setprop(fdt, node, "reg", reg.data(), static_cast<int>(reg.size())), "reg"));
    VSMMU_TRY(w.check(fdt_setprop(fdt, node, "iommu-addresses", iommu_addresses.data(),
                                  static_cast<int>(iommu_addresses.size())), "iommu-addresses"));
    VSMMU_TRY(w.check(fdt_setprop(fdt, node, "no-map", nullptr, 0), "no-map"));
    VSMMU_TRY(w.check(fdt_setprop_u32(fdt, node, "phandle", phandle), "phandle"));
    push_be32(regions, phandle);
  }
  host = fdt_path_offset(fdt, host_path.c_str());
  VSMMU_TRY(w.check(host, "finding the PCIe host again"));
  return w.check(fdt_appendprop(fdt, host, "memory-region", regions.data(), static_cast<int>(regions.size())),
                 "memory-region");
}

}  // namespace

Result<std::vector<std::uint8_t>> add_vsmmu(std::span<const std::uint8_t> base, const VsmmuSpec& spec) {
  VSMMU_TRY(check_spec(spec));
  Writer w;
  const bool fresh = base.empty();
  // libfdt's writers trust the tree they are given; check it whole before touching it.
  if (!fresh)
    if (auto ok = check_blob(std::vector<std::uint8_t>(base.begin(), base.end()), "dt.gen"); !ok)
      return fail(EINVAL, "dt.gen", "the base tree is {}", ok.error().message);
  if (auto r = w.open(base, 1024 + spec.iommu_map.size() * 16 + spec.irqs.size() * 32 + spec.msi_windows.size() * 256); !r)
    return std::unexpected(r.error());
  void* fdt = w.fdt();

  int address_cells = 2, size_cells = 2;
  if (fresh) {
    VSMMU_TRY(w.check(fdt_setprop_u32(fdt, 0, "#address-cells", 2), "#address-cells"));
    VSMMU_TRY(w.check(fdt_setprop_u32(fdt, 0, "#size-cells", 2), "#size-cells"));
  } else {
    VSMMU_TRY(check_interrupt_parent(fdt));
    address_cells = fdt_address_cells(fdt, 0);
    size_cells = fdt_size_cells(fdt, 0);
  }
  VSMMU_TRY_ASSIGN(auto host, find_or_make_host(fdt, fresh, spec.pcie_path));
  // Adding the SMMU node moves the nodes after it; the host is found again by its path.
  const std::string host_path = path_of(fdt, host);

  const std::string name = fmt::format("smmuv3@{:x}", spec.base);
  if (fdt_subnode_offset(fdt, 0, name.c_str()) >= 0)
    return fail(EEXIST, "dt.gen", "the tree already has /{}; an SMMU at {:#x} exists", name, spec.base);
  std::uint32_t phandle = 0;
  VSMMU_TRY(w.check(fdt_generate_phandle(fdt, &phandle), "allocating a phandle"));
  const int smmu = fdt_add_subnode(fdt, 0, name.c_str());
  VSMMU_TRY(w.check(smmu, "adding the SMMU node"));

  std::vector<std::uint8_t> reg;
  VSMMU_TRY(push_cells(reg, spec.base, address_cells, "base address"));
  VSMMU_TRY(push_cells(reg, spec.size, size_cells, "register frame size"));
  std::vector<std::uint8_t> irqs;
  std::vector<std::uint8_t> names;
  for (const auto& irq : spec.irqs) {
    push_be32(irqs, kGicSpi);
    push_be32(irqs, irq.gsiv - kFirstSpi);
    push_be32(irqs, kEdgeRising);
    names.insert(names.end(), irq.name.begin(), irq.name.end());
    names.push_back(0);
  }
  constexpr std::string_view compatible = kSmmuCompatible;
  std::vector<std::uint8_t> compat(compatible.begin(), compatible.end());
  compat.push_back(0);
  const auto set = [&](const char* prop_name, const std::vector<std::uint8_t>& v) {
    return w.check(fdt_setprop(fdt, smmu, prop_name, v.data(), static_cast<int>(v.size())), prop_name);
  };
  for (auto r : {set("compatible", compat), set("reg", reg), set("interrupts", irqs), set("interrupt-names", names),
                 w.check(fdt_setprop_u32(fdt, smmu, "#iommu-cells", 1), "#iommu-cells"),
                 w.check(fdt_setprop_u32(fdt, smmu, "phandle", phandle), "phandle")})
    if (!r) return std::unexpected(r.error());
  if (spec.dma_coherent)
    if (auto r = w.check(fdt_setprop(fdt, smmu, "dma-coherent", nullptr, 0), "dma-coherent"); !r)
      return std::unexpected(r.error());

  if (!spec.iommu_map.empty()) {
    std::vector<std::uint8_t> map;
    for (const auto& m : spec.iommu_map) {
      push_be32(map, m.rid_base);
      push_be32(map, phandle);
      push_be32(map, m.vsid_base);
      push_be32(map, m.length);
    }
    const int node = fdt_path_offset(fdt, host_path.c_str());
    VSMMU_TRY(w.check(node, "finding the PCIe host again"));
    if (auto r = w.check(fdt_setprop(fdt, node, "iommu-map", map.data(), static_cast<int>(map.size())), "iommu-map"); !r)
      return std::unexpected(r.error());
  }
  VSMMU_TRY(add_msi_windows(w, host_path, spec));
  return w.finish();
}

namespace {

class Inspector {
 public:
  explicit Inspector(const void* fdt) : fdt_(fdt) {}

  Report run() {
    int depth = 0;
    for (int node = 0; node >= 0; node = fdt_next_node(fdt_, node, &depth)) {
      if (fdt_node_check_compatible(fdt_, node, kSmmuCompatible.data()) == 0) smmu(node);
      if (!prop(fdt_, node, "iommu-map").empty()) host(node);
    }
    return std::move(report_);
  }

 private:
  template <class... A>
  void problem(int node, fmt::format_string<A...> f, A&&... args) {
    report_.problems.push_back(Problem{path_of(fdt_, node), fmt::format(f, std::forward<A>(args)...)});
  }

  void smmu(int node) {
    SmmuNode s;
    s.path = path_of(fdt_, node);
    s.compatible = std::string(kSmmuCompatible);
    s.phandle = fdt_get_phandle(fdt_, node);
    s.dma_coherent = fdt_getprop(fdt_, node, "dma-coherent", nullptr) != nullptr;
    s.iommu_cells = prop_u32(fdt_, node, "#iommu-cells");
    const int count = fdt_stringlist_count(fdt_, node, "interrupt-names");
    for (int i = 0; i < count; ++i) {
      int len = 0;
      const char* n = fdt_stringlist_get(fdt_, node, "interrupt-names", i, &len);
      if (n) s.interrupt_names.emplace_back(n, static_cast<std::size_t>(len));
    }
    const int parent = fdt_parent_offset(fdt_, node);
    const int ac = parent >= 0 ? fdt_address_cells(fdt_, parent) : -1;
    const int sc = parent >= 0 ? fdt_size_cells(fdt_, parent) : -1;
    auto reg = prop(fdt_, node, "reg");
    if (ac < 1 || ac > 2 || sc < 0 || sc > 2) {
      problem(node, "its parent's #address-cells/#size-cells ({}/{}) are not 1-2/0-2; reg cannot be decoded", ac, sc);
    } else if (reg.empty() || reg.size() % (4 * static_cast<std::size_t>(ac + sc)) != 0) {
      problem(node, "reg is {} bytes, not a whole number of <address size> pairs ({} cells each); the driver cannot "
              "map the registers", reg.size(), ac + sc);
    } else {
      for (std::size_t at = 0; at < reg.size(); at += 4 * static_cast<std::size_t>(ac + sc)) {
        auto cells = [&](std::size_t from, int n) {
          std::uint64_t v = 0;
          for (int i = 0; i < n; ++i) v = v << 32 | be32(reg.data() + from + 4 * static_cast<std::size_t>(i));
          return v;
        };
        s.reg.emplace_back(cells(at, ac), cells(at + 4 * static_cast<std::size_t>(ac), sc));
      }
    }
    if (!s.dma_coherent)
      problem(node,
              "no dma-coherent: Linux then treats the SMMU as not cache coherent (no ARM_SMMU_FEAT_COHERENCY) and "
              "iommufd refuses to bind devices behind it; add dma-coherent if the SMMU's table walks are coherent");
    if (s.iommu_cells != 1u)
      problem(node, "#iommu-cells is {}; arm,smmu-v3 takes exactly one cell (the stream ID)",
              s.iommu_cells ? fmt::format("{}", *s.iommu_cells) : std::string("missing"));
    for (const auto& n : s.interrupt_names)
      if (std::find(kIrqNames.begin(), kIrqNames.end(), n) == kIrqNames.end())
        problem(node, "interrupt name '{}' is not one of eventq, priq, cmdq-sync, gerror, combined", n);
    report_.smmus.push_back(std::move(s));
  }

  void host(int node) {
    Host h;
    h.path = path_of(fdt_, node);
    h.iommu_map_mask = prop_u32(fdt_, node, "iommu-map-mask");
    auto map = prop(fdt_, node, "iommu-map");
    // Each entry is (rid-base, iommu-phandle, iommu-specifier, length); with #iommu-cells = 1 that is
    // four cells (bindings/pci/pci-iommu.txt), which is what Linux's of_map_id assumes.
    if (map.size() % 16 != 0)
      problem(node, "iommu-map is {} bytes, not a whole number of 16-byte (rid-base, phandle, sid-base, length) "
              "entries; Linux rejects the map", map.size());
    for (std::size_t at = 0; at + 16 <= map.size(); at += 16) {
      MapEntry e{be32(map.data() + at), be32(map.data() + at + 4), {}, be32(map.data() + at + 8),
                 be32(map.data() + at + 12)};
      const int target = fdt_node_offset_by_phandle(fdt_, e.phandle);
      if (target < 0) {
        problem(node, "iommu-map entry at RID {:#x} names phandle {:#x}, which no node has", e.rid_base, e.phandle);
      } else {
        e.target = path_of(fdt_, target);
        const auto cells = prop_u32(fdt_, target, "#iommu-cells");
        if (cells != 1u)
          problem(node, "iommu-map entry at RID {:#x} points at {}, which has {} #iommu-cells (needs 1)", e.rid_base,
                  e.target, cells ? fmt::format("{}", *cells) : std::string("no"));
      }
      if (e.length == 0) problem(node, "iommu-map entry at RID {:#x} has length 0", e.rid_base);
      for (const auto& o : h.iommu_map)
        if (e.length && o.length && std::uint64_t{e.rid_base} < std::uint64_t{o.rid_base} + o.length &&
            std::uint64_t{o.rid_base} < std::uint64_t{e.rid_base} + e.length)
          problem(node, "iommu-map entries at RID {:#x} and {:#x} overlap; Linux uses the first match", o.rid_base,
                  e.rid_base);
      h.iommu_map.push_back(std::move(e));
    }
    report_.hosts.push_back(std::move(h));
  }

  const void* fdt_;
  Report report_;
};

}  // namespace

Result<Report> inspect(std::span<const std::uint8_t> blob) {
  // libfdt reads the header's fields in place; an owned copy keeps them aligned whatever the caller's
  // buffer.
  std::vector<std::uint8_t> copy(blob.begin(), blob.end());
  VSMMU_TRY(check_blob(copy, "dt.inspect"));
  return Inspector(copy.data()).run();
}

}  // namespace vsmmu::acpi::dt
