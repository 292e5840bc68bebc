#include "acpi/devicetree.hpp"

#include "base/text.hpp"
#include "base/try.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
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

// Bookworm's libfdt 1.6.1 loops forever in fdt_next_tag, so in fdt_check_full, on a property whose length
// wraps the walk's offset back to where it started (dtc 1.7.0 added the overflow check to fdt_next_tag; found
// by dt_fuzz). One pass over the structure block's tokens (Devicetree Specification 5.4: FDT_BEGIN_NODE and
// its NUL-terminated name, FDT_PROP with len and nameoff, padded to 4 bytes) refuses a property that runs past
// the block before libfdt walks it. Every step advances, so the pass ends. Anything else wrong is left to
// fdt_check_full, which names it. The caller has checked the 40-byte header is there and version >= 16.
std::optional<std::string> property_past_structure_block(const std::vector<std::uint8_t>& b) {
  const std::uint8_t* p = b.data();
  // fdt_header: totalsize word 1, off_dt_struct word 2, version word 5, size_dt_struct word 9 (version 17).
  const std::uint64_t start = be32(p + 8);
  std::uint64_t end = std::min<std::uint64_t>(be32(p + 4), b.size());
  if (be32(p + 20) >= 17) end = std::min<std::uint64_t>(end, start + be32(p + 36));
  const auto align4 = [](std::uint64_t at) { return (at + 3) & ~std::uint64_t{3}; };
  for (std::uint64_t at = start; at + 4 <= end;) {
    const std::uint64_t tag = at;
    const std::uint32_t token = be32(p + at);
    at += 4;
    if (token == FDT_BEGIN_NODE) {
      const void* nul = std::memchr(p + at, 0, end - at);
      if (!nul) return std::nullopt;
      at = align4(static_cast<std::uint64_t>(static_cast<const std::uint8_t*>(nul) - p) + 1);
    } else if (token == FDT_PROP) {
      if (at + 8 > end) return std::nullopt;
      const std::uint32_t len = be32(p + at);
      if (len > end - at - 8)
        return fmt::format("the property at byte {:#x} (structure block offset {:#x}) claims a {}-byte value, "
                           "past the structure block's end {} bytes on",
                           tag, tag - start, len, end - tag);
      at = align4(at + 8 + len);
    } else if (token != FDT_END_NODE && token != FDT_NOP) {
      return std::nullopt;  // FDT_END, or a bad tag fdt_check_full reports
    }
  }
  return std::nullopt;
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
  if (int err = fdt_check_header(copy.data()); err != 0)
    return fail(EINVAL, std::string(where),
                "not a sound flattened device tree: {} (a .dtb; compile .dts files with dtc)", fdt_error(err));
  if (auto past = property_past_structure_block(copy))
    return fail(EINVAL, std::string(where), "not a sound flattened device tree: {}", *past);
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

std::string_view to_string(Severity s) { return s == Severity::error ? "error" : "warning"; }

std::size_t Report::count(Severity s) const {
  return static_cast<std::size_t>(
      std::count_if(problems.begin(), problems.end(), [s](const Problem& p) { return p.severity == s; }));
}

HostNesting Report::status() const {
  if (count(Severity::error) > 0) return HostNesting::malformed;
  const bool some = std::any_of(devices.begin(), devices.end(), [](const Device& d) {
    return d.available && d.verdict == HostNesting::needs_s2fwb;
  });
  return some ? HostNesting::needs_s2fwb : HostNesting::impossible;
}

std::string Report::counts() const {
  const auto v3 = std::count_if(iommus.begin(), iommus.end(), [](const Iommu& i) { return i.smmu_v3; });
  std::size_t needs = 0, impossible = 0, broken = 0, unavailable = 0;
  for (const auto& d : devices) {
    if (!d.available) ++unavailable;
    else if (d.verdict == HostNesting::needs_s2fwb) ++needs;
    else if (d.verdict == HostNesting::malformed) ++broken;
    else ++impossible;
  }
  std::string devs = fmt::format("{} needing S2FWB, {} impossible", needs, impossible);
  if (broken) devs += fmt::format(", {} with a broken reference", broken);
  if (unavailable) devs += fmt::format(", {} unavailable", unavailable);
  return fmt::format("{} ({} arm,smmu-v3), {} ({}); {}, {}", counted(iommus.size(), "IOMMU"), v3,
                     counted(devices.size(), "device"), devs, counted(count(Severity::error), "error"),
                     counted(count(Severity::warning), "warning"));
}

std::string Report::summary() const {
  switch (status()) {
    case HostNesting::malformed: {
      const auto errors = count(Severity::error);
      return fmt::format("malformed: {}: Linux would misread this tree; fix {} first", counted(errors, "error"),
                         errors == 1 ? "it" : "them");
    }
    case HostNesting::needs_s2fwb:
      return "needs S2FWB: devices sit behind an available, coherent arm,smmu-v3; a device tree cannot carry CANWBS, "
             "so nesting needs the SMMU's S2FWB (IDR3.FWB): `vsmmu probe` reads it";
    case HostNesting::impossible:
    case HostNesting::possible:  // never: status() does not give it
      break;
  }
  return iommus.empty() ? "impossible: the tree describes no IOMMU"
                        : "impossible: no available device sits behind an available, coherent arm,smmu-v3";
}

Report refused(const Error& e) { return Report{{}, {}, {Problem{"/", e.message, Severity::error}}}; }

namespace {

// A node's place as Linux sees it (drivers/of/base.c of_device_is_available): available when it has no
// status or status "okay"/"ok"; "disabled", "reserved", "fail", "fail-sss" (or anything else) hide it.
// Linux creates no platform device below an unavailable bus either (drivers/of/platform.c), so a parent's
// status counts too.
std::optional<std::string> own_unavailability(const void* fdt, int node) {
  int len = 0;
  const char* status = static_cast<const char*>(fdt_getprop(fdt, node, "status", &len));
  if (!status) return std::nullopt;
  const std::string value(status, strnlen(status, static_cast<std::size_t>(std::max(len, 0))));
  if (len > 0 && (value == "okay" || value == "ok")) return std::nullopt;
  return fmt::format("status = \"{}\"", value);
}

class Inspector {
 public:
  explicit Inspector(const void* fdt) : fdt_(fdt) {}

  Report run() {
    // Nodes the devices name, so that an IOMMU lacking #iommu-cells is still listed where it is in the tree.
    std::vector<int> named;
    for (int node = 0, depth = 0; node >= 0 && depth >= 0; node = fdt_next_node(fdt_, node, &depth)) {
      for (auto phandle : referenced_phandles(node))
        if (const int target = fdt_node_offset_by_phandle(fdt_, phandle); target >= 0) named.push_back(target);
    }
    // Why the node at each depth of the current path is hidden (empty: available). fdt_next_node leaves the
    // root with depth -1 and an offset past it, hence the depth test.
    std::vector<std::string> hidden(1);
    for (int node = 0, depth = 0; node >= 0 && depth >= 0; node = fdt_next_node(fdt_, node, &depth)) {
      const auto level = static_cast<std::size_t>(depth);
      hidden.resize(level + 1);
      const auto own = own_unavailability(fdt_, node);
      if (own) hidden_at_.insert(node);
      if (own) hidden[level] = *own;
      else hidden[level] = level > 0 ? hidden[level - 1] : std::string();
      unavailable_[node] = hidden[level];
      const bool is_iommu = fdt_getprop(fdt_, node, "#iommu-cells", nullptr) != nullptr ||
                            fdt_node_check_compatible(fdt_, node, kSmmuCompatible.data()) == 0 ||
                            std::find(named.begin(), named.end(), node) != named.end();
      if (is_iommu) iommu(node);
    }
    for (int node = 0, depth = 0; node >= 0 && depth >= 0; node = fdt_next_node(fdt_, node, &depth))
      if (!prop(fdt_, node, "iommus").empty() || !prop(fdt_, node, "iommu-map").empty()) device(node);
    return std::move(report_);
  }

 private:
  template <class... A>
  void problem(Severity severity, int node, fmt::format_string<A...> f, A&&... args) {
    report_.problems.push_back(Problem{path_of(fdt_, node), fmt::format(f, std::forward<A>(args)...), severity});
  }

  // The phandles of a node's iommus (each followed by its IOMMU's #iommu-cells) and iommu-map (every fourth
  // cell), as far as they can be read.
  std::vector<std::uint32_t> referenced_phandles(int node) const {
    std::vector<std::uint32_t> out;
    const auto iommus = prop(fdt_, node, "iommus");
    for (std::size_t at = 0; at + 4 <= iommus.size();) {
      const std::uint32_t phandle = be32(iommus.data() + at);
      out.push_back(phandle);
      const int target = fdt_node_offset_by_phandle(fdt_, phandle);
      const auto cells = target >= 0 ? prop_u32(fdt_, target, "#iommu-cells") : std::nullopt;
      if (!cells || *cells > 16) break;
      at += 4 * (1 + std::size_t{*cells});
    }
    const auto map = prop(fdt_, node, "iommu-map");
    for (std::size_t at = 0; at + 16 <= map.size(); at += 16) out.push_back(be32(map.data() + at + 4));
    return out;
  }

  // Why `node` is hidden from Linux, naming the unavailable node when it is a parent; empty when available.
  std::string unavailability(int node) const {
    const auto it = unavailable_.find(node);
    if (it == unavailable_.end() || it->second.empty()) return {};
    if (hidden_at_.contains(node)) return it->second;
    // A parent is the cause: name the nearest hidden ancestor.
    for (int p = fdt_parent_offset(fdt_, node); p >= 0; p = fdt_parent_offset(fdt_, p))
      if (hidden_at_.contains(p))
        return fmt::format("under {}, whose {}; Linux creates no device below it (drivers/of/platform.c)",
                           path_of(fdt_, p), it->second);
    return it->second;
  }

  // reg's address through every parent bus's ranges to the CPU's (drivers/of/address.c of_translate_address):
  // an empty ranges is 1:1; a bus without ranges cannot be crossed. Sets `why` when it cannot be done.
  std::optional<std::uint64_t> translate(int node, std::uint64_t address, std::string& why) const {
    for (int bus = fdt_parent_offset(fdt_, node); bus > 0; bus = fdt_parent_offset(fdt_, bus)) {
      int len = 0;
      const auto* ranges = static_cast<const std::uint8_t*>(fdt_getprop(fdt_, bus, "ranges", &len));
      if (!ranges) {
        why = fmt::format("{} has no ranges, so addresses on it do not reach the CPU (drivers/of/address.c "
                          "of_translate_one); add ranges (empty for 1:1)",
                          path_of(fdt_, bus));
        return std::nullopt;
      }
      if (len == 0) continue;  // 1:1
      const int parent = fdt_parent_offset(fdt_, bus);
      const int na = fdt_address_cells(fdt_, bus), ns = fdt_size_cells(fdt_, bus);
      const int pna = parent >= 0 ? fdt_address_cells(fdt_, parent) : -1;
      if (na < 1 || na > 2 || pna < 1 || pna > 2 || ns < 1 || ns > 2) {
        why = fmt::format("{}'s ranges maps {}-cell addresses to {}-cell ones with {}-cell sizes; only 1-2 cells "
                          "are translated",
                          path_of(fdt_, bus), na, pna, ns);
        return std::nullopt;
      }
      const std::size_t entry = 4 * static_cast<std::size_t>(na + pna + ns);
      if (len < 0 || static_cast<std::size_t>(len) % entry != 0) {
        why = fmt::format("{}'s ranges is {} bytes, not a whole number of {}-byte entries", path_of(fdt_, bus),
                          len, entry);
        return std::nullopt;
      }
      bool found = false;
      for (std::size_t at = 0; at < static_cast<std::size_t>(len) && !found; at += entry) {
        const std::uint64_t child = read_cells(ranges + at, na), to = read_cells(ranges + at + 4 * na, pna),
                            size = read_cells(ranges + at + 4 * (na + pna), ns);
        if (address >= child && address - child < size) {
          address = to + (address - child);
          found = true;
        }
      }
      if (!found) {
        why = fmt::format("{:#x} lies outside every range of {}'s ranges", address, path_of(fdt_, bus));
        return std::nullopt;
      }
    }
    return address;
  }

  static std::uint64_t read_cells(const std::uint8_t* p, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 32 | be32(p + 4 * static_cast<std::size_t>(i));
    return v;
  }

  void iommu(int node) {
    Iommu s;
    s.path = path_of(fdt_, node);
    for (int i = 0, n = fdt_stringlist_count(fdt_, node, "compatible"); i < n; ++i) {
      int len = 0;
      if (const char* c = fdt_stringlist_get(fdt_, node, "compatible", i, &len))
        s.compatible.emplace_back(c, static_cast<std::size_t>(len));
    }
    s.smmu_v3 = std::find(s.compatible.begin(), s.compatible.end(), kSmmuCompatible) != s.compatible.end();
    s.phandle = fdt_get_phandle(fdt_, node);
    s.unavailable = unavailability(node);
    s.available = s.unavailable.empty();
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
      problem(Severity::error, node,
              "its parent's #address-cells/#size-cells ({}/{}) are not 1-2/0-2; reg cannot be decoded", ac, sc);
    } else if (reg.empty() || reg.size() % (4 * static_cast<std::size_t>(ac + sc)) != 0) {
      problem(Severity::error, node,
              "reg is {} bytes, not a whole number of <address size> pairs ({} cells each); the driver cannot "
              "map the registers",
              reg.size(), ac + sc);
    } else {
      for (std::size_t at = 0; at < reg.size(); at += 4 * static_cast<std::size_t>(ac + sc)) {
        RegEntry r{read_cells(reg.data() + at, ac), read_cells(reg.data() + at + 4 * static_cast<std::size_t>(ac), sc),
                   std::nullopt};
        if (s.untranslatable.empty()) r.cpu_address = translate(node, r.address, s.untranslatable);
        s.reg.push_back(r);
      }
      if (!s.untranslatable.empty())
        problem(Severity::warning, node, "reg {:#x} is not translatable to a CPU address: {}", s.reg.front().address,
                s.untranslatable);
    }
    if (!s.iommu_cells)
      problem(Severity::error, node,
              "no #iommu-cells: an IOMMU needs it (bindings/iommu/iommu.txt) and Linux cannot read the devices' "
              "references to it");
    if (s.smmu_v3) {
      if (s.iommu_cells && *s.iommu_cells != 1)
        problem(Severity::error, node, "#iommu-cells is {}; arm,smmu-v3 takes exactly one cell (the stream ID)",
                *s.iommu_cells);
      if (!s.dma_coherent)
        problem(Severity::warning, node,
                "no dma-coherent: Linux then treats the SMMU as not cache coherent (no ARM_SMMU_FEAT_COHERENCY) and "
                "VFIO refuses the devices behind it; add dma-coherent if the SMMU's table walks are coherent");
      for (const auto& n : s.interrupt_names)
        if (std::find(kIrqNames.begin(), kIrqNames.end(), n) == kIrqNames.end())
          problem(Severity::warning, node,
                  "interrupt name '{}' is not one of eventq, priq, cmdq-sync, gerror, combined; Linux ignores the "
                  "line",
                  n);
    }
    judge(s);
    iommu_at_[node] = report_.iommus.size();
    report_.iommus.push_back(std::move(s));
  }

  static void judge(Iommu& s) {
    s.verdict = HostNesting::impossible;
    if (!s.available) {
      s.reason = fmt::format("{} is unavailable ({}): Linux gives the devices behind it no IOMMU "
                             "(drivers/iommu/of_iommu.c of_iommu_xlate)",
                             s.path, s.unavailable);
    } else if (!s.smmu_v3) {
      s.reason = fmt::format("{} is \"{}\", not an arm,smmu-v3: iommufd's vIOMMU (IOMMU_VIOMMU_ALLOC) exists only "
                             "on arm-smmu-v3",
                             s.path, fmt::join(s.compatible, "\", \""));
    } else if (!s.dma_coherent) {
      s.reason = fmt::format("{} has no dma-coherent: arm-smmu-v3 then has no ARM_SMMU_FEAT_COHERENCY, reports no "
                             "IOMMU_CAP_CACHE_COHERENCY, and VFIO refuses its devices (drivers/vfio/vfio_main.c)",
                             s.path);
    } else if (!s.untranslatable.empty() || s.reg.empty()) {
      s.reason = fmt::format("{}'s registers cannot be located, so arm-smmu-v3 does not probe it", s.path);
    } else {
      s.verdict = HostNesting::needs_s2fwb;
      s.reason = fmt::format("{} is a coherent arm,smmu-v3: nesting if it has S2FWB (IDR3.FWB), which a device tree "
                             "cannot show (no CANWBS); `vsmmu probe` reads it",
                             s.path);
    }
  }

  const Iommu* iommu_named(std::uint32_t phandle) const {
    const int target = fdt_node_offset_by_phandle(fdt_, phandle);
    const auto it = target >= 0 ? iommu_at_.find(target) : iommu_at_.end();
    return it == iommu_at_.end() ? nullptr : &report_.iommus[it->second];
  }

  void device(int node) {
    Device d;
    d.path = path_of(fdt_, node);
    d.unavailable = unavailability(node);
    d.available = d.unavailable.empty();
    std::vector<const Iommu*> behind;
    bool broken = false;
    iommus(node, d, behind, broken);
    iommu_map(node, d, behind, broken);
    std::vector<const Iommu*> distinct;
    for (const auto* i : behind)
      if (std::find(distinct.begin(), distinct.end(), i) == distinct.end()) distinct.push_back(i);
    std::vector<std::string> named;  // the IOMMUs iommus names
    for (const auto& e : d.iommus)
      if (!e.iommu.empty() && std::find(named.begin(), named.end(), e.iommu) == named.end()) named.push_back(e.iommu);
    if (named.size() > 1)
      problem(Severity::warning, node,
              "iommus names {} IOMMUs ({}); Linux attaches a device to one (drivers/iommu/iommu.c iommu_fwspec_init "
              "refuses a second), so it gets none",
              named.size(), fmt::join(named, ", "));
    std::vector<std::string> reasons;
    for (const auto* i : distinct) reasons.push_back(i->reason);
    if (!d.available) {
      d.verdict = HostNesting::impossible;
      d.reason = fmt::format("the device is unavailable ({}) and does not count", d.unavailable);
    } else if (broken) {
      d.verdict = HostNesting::malformed;
      d.reason = "a reference to its IOMMU cannot be read (see the problems)";
    } else if (named.size() > 1) {
      d.verdict = HostNesting::impossible;
      d.reason = fmt::format("iommus names {} IOMMUs; Linux gives it none", named.size());
    } else {
      const bool some = std::any_of(distinct.begin(), distinct.end(),
                                    [](const Iommu* i) { return i->verdict == HostNesting::needs_s2fwb; });
      d.verdict = some ? HostNesting::needs_s2fwb : HostNesting::impossible;
      d.reason = fmt::format("{}", fmt::join(reasons, "; "));
    }
    report_.devices.push_back(std::move(d));
  }

  // iommus = <&iommu cells...>...: each specifier is the phandle and the IOMMU's #iommu-cells cells
  // (bindings/iommu/iommu.txt); Linux stops at the first it cannot read (drivers/of/base.c of_phandle_iterator).
  void iommus(int node, Device& d, std::vector<const Iommu*>& behind, bool& broken) {
    const auto cells = prop(fdt_, node, "iommus");
    std::size_t at = 0;
    while (at < cells.size()) {
      if (cells.size() - at < 4) {
        problem(Severity::error, node, "iommus ends with {} stray bytes", cells.size() - at);
        broken = true;
        return;
      }
      IommusEntry e;
      e.phandle = be32(cells.data() + at);
      at += 4;
      const Iommu* target = iommu_named(e.phandle);
      if (!target) {
        problem(Severity::error, node, "iommus names phandle {:#x}, which no node has", e.phandle);
        broken = true;
        d.iommus.push_back(std::move(e));
        return;
      }
      e.iommu = target->path;
      if (!target->iommu_cells || *target->iommu_cells > 16) {
        problem(Severity::error, node, "iommus names {}, whose #iommu-cells is {}; the specifier cannot be read",
                target->path, target->iommu_cells ? fmt::format("{}", *target->iommu_cells) : std::string("missing"));
        broken = true;
        d.iommus.push_back(std::move(e));
        return;
      }
      if ((cells.size() - at) / 4 < *target->iommu_cells) {
        problem(Severity::error, node, "iommus names {} but holds {} of its {} #iommu-cells", target->path,
                (cells.size() - at) / 4, *target->iommu_cells);
        broken = true;
        d.iommus.push_back(std::move(e));
        return;
      }
      for (std::uint32_t i = 0; i < *target->iommu_cells; ++i, at += 4) e.cells.push_back(be32(cells.data() + at));
      e.verdict = target->verdict;
      behind.push_back(target);
      d.iommus.push_back(std::move(e));
    }
  }

  // iommu-map = <rid-base &iommu id-base length>...: four cells per entry, whatever the IOMMU's #iommu-cells, as
  // Linux reads it (drivers/of/base.c of_map_id); a RID is looked up as RID & iommu-map-mask.
  void iommu_map(int node, Device& d, std::vector<const Iommu*>& behind, bool& broken) {
    const auto map = prop(fdt_, node, "iommu-map");
    if (map.empty()) return;
    d.iommu_map_mask = prop_u32(fdt_, node, "iommu-map-mask");
    if (map.size() % 16 != 0) {
      problem(Severity::error, node,
              "iommu-map is {} bytes, not a whole number of 16-byte (rid-base, phandle, sid-base, length) entries; "
              "Linux rejects the map",
              map.size());
      broken = true;
    }
    for (std::size_t at = 0; at + 16 <= map.size(); at += 16) {
      MapEntry e{be32(map.data() + at), be32(map.data() + at + 4), {}, be32(map.data() + at + 8),
                 be32(map.data() + at + 12), HostNesting::malformed};
      if (const Iommu* target = iommu_named(e.phandle)) {
        e.target = target->path;
        e.verdict = target->verdict;
        behind.push_back(target);
      } else {
        problem(Severity::error, node, "iommu-map entry at RID {:#x} names phandle {:#x}, which no node has",
                e.rid_base, e.phandle);
        broken = true;
      }
      if (d.iommu_map_mask && (e.rid_base & ~*d.iommu_map_mask) != 0) {
        problem(Severity::error, node,
                "iommu-map entry at RID {:#x} has bits outside iommu-map-mask {:#x}; Linux refuses the map "
                "(drivers/of/base.c of_map_id)",
                e.rid_base, *d.iommu_map_mask);
        broken = true;
      }
      if (e.length == 0)
        problem(Severity::warning, node, "iommu-map entry at RID {:#x} has length 0 and maps nothing", e.rid_base);
      for (const auto& o : d.iommu_map)
        if (e.length && o.length && std::uint64_t{e.rid_base} < std::uint64_t{o.rid_base} + o.length &&
            std::uint64_t{o.rid_base} < std::uint64_t{e.rid_base} + e.length)
          problem(Severity::warning, node, "iommu-map entries at RID {:#x} and {:#x} overlap; Linux uses the first match",
                  o.rid_base, e.rid_base);
      d.iommu_map.push_back(std::move(e));
    }
  }

  const void* fdt_;
  Report report_;
  std::map<int, std::string> unavailable_;  // node offset -> why it is hidden (empty: available)
  std::set<int> hidden_at_;                 // nodes whose own status hides them
  std::map<int, std::size_t> iommu_at_;     // node offset -> index in report_.iommus
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
