#include "host/sim/profile.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "base/try.hpp"
#include "host/sim/embedded_profiles.hpp"
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::host::sim {

namespace {

using nlohmann::json;
constexpr const char* kWhere = "sim.profile";

// IIDR values the simulated driver recognises (Linux arm-smmu-v3: IIDR_IMPLEMENTER_ARM, IIDR_PRODUCTID_*).
constexpr std::uint64_t kImplementerArm = 0x43b;
constexpr std::uint64_t kProductMmu600 = 0x483;
constexpr std::uint64_t kProductMmu700 = 0x487;

// Errata whose workaround the simulated driver knows (docs/sim-host.md).
const std::vector<std::string> kKnownErrata = {"1209401", "2268618", "2812531", "T264-SMMU-3"};

// Walks one JSON object, remembering which keys were read, so that any other key is an error that names the
// file, the key's path and the keys allowed there.
class Node {
 public:
  Node(const json& j, std::string path, std::string_view source) : j_(j), path_(std::move(path)), source_(source) {}

  std::unexpected<Error> error(std::string_view key, std::string_view what) const {
    return fail(EINVAL, kWhere, "{}: {}: {}", source_, key_path(key), what);
  }
  std::string key_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }
  bool has(std::string_view key) {
    allowed_.emplace(key);
    return j_.contains(std::string(key));
  }

  Result<std::string> string(std::string_view key, std::optional<std::string> dflt = std::nullopt) {
    if (!has(key)) {
      if (dflt) return *dflt;
      return error(key, "missing; a string is required here");
    }
    const json& v = j_.at(std::string(key));
    if (!v.is_string()) return error(key, fmt::format("{} is not a string", v.dump()));
    return v.get<std::string>();
  }

  Result<bool> boolean(std::string_view key, bool dflt) {
    if (!has(key)) return dflt;
    const json& v = j_.at(std::string(key));
    if (!v.is_boolean()) return error(key, fmt::format("{} is not allowed; allowed: true, false", v.dump()));
    return v.get<bool>();
  }

  // An unsigned integer: a JSON number, or a string in decimal or 0x-hexadecimal (register values).
  Result<std::uint64_t> number(std::string_view key, std::uint64_t lo, std::uint64_t hi,
                               std::optional<std::uint64_t> dflt = std::nullopt) {
    if (!has(key)) {
      if (dflt) return *dflt;
      return error(key, fmt::format("missing; an integer in [{}, {}] is required here", lo, hi));
    }
    return number_value(j_.at(std::string(key)), key, lo, hi);
  }
  Result<std::uint64_t> number_value(const json& v, std::string_view key, std::uint64_t lo, std::uint64_t hi) const {
    std::uint64_t n = 0;
    if (v.is_number_unsigned()) {
      n = v.get<std::uint64_t>();
    } else if (v.is_string()) {
      const std::string s = v.get<std::string>();
      const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
      const char* first = s.data() + (hex ? 2 : 0);
      const char* last = s.data() + s.size();
      auto [ptr, ec] = std::from_chars(first, last, n, hex ? 16 : 10);
      if (ec != std::errc() || ptr != last || first == last)
        return error(key, fmt::format("{} is not an integer (decimal or 0x-hexadecimal)", v.dump()));
    } else {
      return error(key, fmt::format("{} is not allowed; allowed: an integer in [{}, {}]", v.dump(), lo, hi));
    }
    if (n < lo || n > hi) return error(key, fmt::format("{} is out of range; allowed: [{}, {}]", n, lo, hi));
    return n;
  }

  template <class E>
  Result<E> choice(std::string_view key, const std::vector<std::pair<std::string_view, E>>& options, E dflt) {
    if (!has(key)) return dflt;
    const json& v = j_.at(std::string(key));
    std::vector<std::string> names;
    for (const auto& [name, value] : options) {
      if (v.is_string() && v.get<std::string>() == name) return value;
      names.push_back(fmt::format("\"{}\"", name));
    }
    return error(key, fmt::format("{} is not allowed; allowed: {}", v.dump(), fmt::join(names, ", ")));
  }

  Result<const json*> array(std::string_view key, bool required) {
    if (!has(key)) {
      if (required) return error(key, "missing; an array is required here");
      return nullptr;
    }
    const json& v = j_.at(std::string(key));
    if (!v.is_array()) return error(key, fmt::format("{} is not an array", v.dump().substr(0, 40)));
    return &v;
  }

  // After reading: any key not asked for is an error.
  Result<void> no_unknown_keys() const {
    for (const auto& [key, value] : j_.items()) {
      if (allowed_.count(key)) continue;
      std::vector<std::string> names;
      for (const auto& a : allowed_) names.push_back(fmt::format("\"{}\"", a));
      return error(key, fmt::format("unknown key; allowed here: {}", fmt::join(names, ", ")));
    }
    return {};
  }

  const std::string& path() const { return path_; }
  std::string_view source() const { return source_; }

 private:
  const json& j_;
  std::string path_;
  std::string_view source_;
  std::set<std::string, std::less<>> allowed_;
};

Result<json> parse_json(std::string_view text, std::string_view source) {
  try {
    json j = json::parse(text.begin(), text.end(), nullptr, true, /*ignore_comments=*/false);
    if (!j.is_object()) return fail(EINVAL, kWhere, "{}: the top level must be a JSON object", source);
    return j;
  } catch (const json::parse_error& e) {
    return fail(EINVAL, kWhere, "{}: not valid JSON: {}", source, e.what());
  }
}

Result<void> check_kind(Node& n, std::string_view want) {
  VSMMU_TRY_ASSIGN(auto kind, n.string("kind"));
  if (kind != want) {
    if (kind == "kernel" || kind == "hardware")
      return n.error("kind", fmt::format("is \"{}\", but a {} profile is needed here", kind, want));
    return n.error("kind", fmt::format("\"{}\" is not allowed; allowed: \"kernel\", \"hardware\"", kind));
  }
  return {};
}

template <class Spec>
Result<std::size_t> find_named(Node& n, std::string_view key, const std::vector<Spec>& specs, std::string_view what) {
  VSMMU_TRY_ASSIGN(auto name, n.string(key));
  for (std::size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name) return i;
  std::vector<std::string> names;
  for (const auto& s : specs) names.push_back(fmt::format("\"{}\"", s.name));
  return n.error(key, fmt::format("\"{}\" names no {}; allowed: {}", name, what,
                                  names.empty() ? std::string("(none defined)") : fmt::format("{}", fmt::join(names, ", "))));
}

template <class Spec>
Result<void> check_unique_name(Node& n, const std::vector<Spec>& specs, const std::string& name) {
  for (const auto& s : specs)
    if (s.name == name) return n.error("name", fmt::format("\"{}\" is used twice; names must be unique", name));
  if (name.empty()) return n.error("name", "is empty");
  return {};
}

Result<SmmuSpec> parse_smmu(const json& j, std::string path, std::string_view source, const std::vector<SmmuSpec>& done) {
  if (!j.is_object()) return fail(EINVAL, kWhere, "{}: {}: must be an object", source, path);
  Node n(j, std::move(path), source);
  SmmuSpec s;
  VSMMU_TRY_ASSIGN(auto name, n.string("name"));
  VSMMU_TRY(check_unique_name(n, done, name));
  s.name = name;

  // Base values: the model's reference SMMUv3.2, or the raw registers the profile gives.
  s.config = smmu::model::ModelConfig::reference();
  VSMMU_TRY_ASSIGN(auto idr, n.array("idr", false));
  if (idr) {
    if (idr->size() != 6) return n.error("idr", fmt::format("has {} values; allowed: exactly 6 (IDR0..IDR5)", idr->size()));
    std::array<std::uint32_t, 6> v{};
    for (std::size_t i = 0; i < 6; ++i) {
      VSMMU_TRY_ASSIGN(auto x, n.number_value((*idr)[i], fmt::format("idr[{}]", i), 0, 0xffffffffULL));
      v[i] = static_cast<std::uint32_t>(x);
    }
    s.config.idr0 = smmu::Idr0::of(v[0]);
    s.config.idr1 = smmu::Idr1::of(v[1]);
    s.config.idr2 = smmu::Idr2::of(v[2]);
    s.config.idr3 = smmu::Idr3::of(v[3]);
    s.config.idr4 = smmu::Idr4::of(v[4]);
    s.config.idr5 = smmu::Idr5::of(v[5]);
  }

  // Named settings override the base.
  using smmu::Idr0;
  using smmu::Idr1;
  using smmu::Idr3;
  using smmu::Idr5;
  if (n.has("stage1")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("stage1", true)); s.config.idr0.set(Idr0::S1P, b); }
  if (n.has("stage2")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("stage2", true)); s.config.idr0.set(Idr0::S2P, b); }
  if (n.has("coherent")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("coherent", true)); s.config.idr0.set(Idr0::COHACC, b); }
  if (n.has("ats")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("ats", false)); s.config.idr0.set(Idr0::ATS, b); }
  if (n.has("asid16")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("asid16", true)); s.config.idr0.set(Idr0::ASID16, b); }
  if (n.has("vmid16")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("vmid16", true)); s.config.idr0.set(Idr0::VMID16, b); }
  if (n.has("msi")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("msi", true)); s.config.idr0.set(Idr0::MSI, b); }
  if (n.has("two_level_stream_table")) {
    VSMMU_TRY_ASSIGN(auto b, n.boolean("two_level_stream_table", true));
    s.config.idr0.set(Idr0::ST_LEVEL, b ? smmu::StLevel::two_level : smmu::StLevel::linear);
  }
  if (n.has("two_level_cd_table")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("two_level_cd_table", true)); s.config.idr0.set(Idr0::CD2L, b); }
  if (n.has("httu")) {
    VSMMU_TRY_ASSIGN(auto h, n.choice<smmu::Httu>("httu", {{"none", smmu::Httu::none}, {"access", smmu::Httu::access},
                                               {"dirty", smmu::Httu::access_dirty}}, smmu::Httu::none));
    s.config.idr0.set(Idr0::HTTU, h);
  }
  if (n.has("sid_bits")) { VSMMU_TRY_ASSIGN(auto v, n.number("sid_bits", 1, 32)); s.config.idr1.set(Idr1::SIDSIZE, v); }
  if (n.has("ssid_bits")) { VSMMU_TRY_ASSIGN(auto v, n.number("ssid_bits", 0, 20)); s.config.idr1.set(Idr1::SSIDSIZE, v); }
  // IDR0.STALL_MODEL and IDR5.STALL_MAX (IHI 0070 3.12.2, 6.3.1, 6.3.6): "terminate" (0b01, the default),
  // "stall" (0b00: stall and terminate, per stream) or "forced" (0b10); stall_max bounds held stalls.
  if (n.has("stall_model")) {
    VSMMU_TRY_ASSIGN(auto m, n.choice<smmu::StallModel>("stall_model", {{"terminate", smmu::StallModel::terminate},
                                                   {"stall", smmu::StallModel::stall_and_terminate},
                                                   {"forced", smmu::StallModel::stall_forced}},
                                                   smmu::StallModel::terminate));
    s.config.idr0.set(Idr0::STALL_MODEL, m);
    if (m != smmu::StallModel::terminate && !n.has("stall_max")) s.config.idr5.set(Idr5::STALL_MAX, kDefaultStallMax);
  }
  if (n.has("stall_max")) { VSMMU_TRY_ASSIGN(auto v, n.number("stall_max", 0, 0xffff)); s.config.idr5.set(Idr5::STALL_MAX, static_cast<std::uint16_t>(v)); }
  if (n.has("s2fwb")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("s2fwb", false)); s.config.idr3.set(Idr3::FWB, b); }
  if (n.has("ril")) { VSMMU_TRY_ASSIGN(auto b, n.boolean("ril", false)); s.config.idr3.set(Idr3::RIL, b); }
  if (n.has("bbml")) { VSMMU_TRY_ASSIGN(auto v, n.number("bbml", 0, 2)); s.config.idr3.set(Idr3::BBML, v); }
  if (n.has("oas_bits")) {
    VSMMU_TRY_ASSIGN(auto v, n.number("oas_bits", 32, 56));
    auto oas = smmu::oas_for_bits(static_cast<unsigned>(v));
    if (!oas) return n.error("oas_bits", fmt::format("{} is not allowed; allowed: 32, 36, 40, 42, 44, 48, 52, 56", v));
    s.config.idr5.set(Idr5::OAS, *oas);
  }
  if (n.has("granules")) {
    VSMMU_TRY_ASSIGN(auto g, n.array("granules", true));
    bool g4 = false, g16 = false, g64 = false;
    for (const auto& e : *g) {
      const std::string v = e.is_string() ? e.get<std::string>() : e.dump();
      if (v == "4K") g4 = true;
      else if (v == "16K") g16 = true;
      else if (v == "64K") g64 = true;
      else return n.error("granules", fmt::format("{} is not allowed; allowed: \"4K\", \"16K\", \"64K\"", e.dump()));
    }
    s.config.idr5.set(Idr5::GRAN4K, g4).set(Idr5::GRAN16K, g16).set(Idr5::GRAN64K, g64);
  }

  // IIDR: a product the driver knows (with its variant and revision), or raw.
  const bool named_product = n.has("model") || n.has("variant") || n.has("revision");
  if (n.has("iidr")) {
    if (named_product) return n.error("iidr", "cannot be combined with \"model\", \"variant\" or \"revision\"");
    VSMMU_TRY_ASSIGN(auto v, n.number("iidr", 0, 0xffffffffULL));
    s.config.iidr = smmu::Iidr::of(static_cast<std::uint32_t>(v));
  } else if (named_product) {
    enum class Product { generic, mmu600, mmu700 };
    VSMMU_TRY_ASSIGN(auto p, n.choice<Product>("model", {{"generic", Product::generic}, {"mmu-600", Product::mmu600},
                                             {"mmu-700", Product::mmu700}}, Product::generic));
    VSMMU_TRY_ASSIGN(auto variant, n.number("variant", 0, 15, 0));
    VSMMU_TRY_ASSIGN(auto revision, n.number("revision", 0, 15, 0));
    s.config.iidr = smmu::Iidr{};
    if (p != Product::generic)
      s.config.iidr.set(smmu::Iidr::Implementer, kImplementerArm)
          .set(smmu::Iidr::ProductID, p == Product::mmu600 ? kProductMmu600 : kProductMmu700);
    s.config.iidr.set(smmu::Iidr::Variant, variant).set(smmu::Iidr::Revision, revision);
  }
  if (n.has("arch")) {
    VSMMU_TRY_ASSIGN(auto a, n.choice<unsigned>("arch", {{"3.0", 0}, {"3.1", 1}, {"3.2", 2}, {"3.3", 3}}, 2));
    s.config.aidr = smmu::Aidr{};
    s.config.aidr.set(smmu::Aidr::ArchMinorRev, a);
  }
  VSMMU_TRY_ASSIGN(auto errata, n.array("errata", false));
  if (errata) {
    for (const auto& e : *errata) {
      const std::string v = e.is_string() ? e.get<std::string>() : e.dump();
      if (std::find(kKnownErrata.begin(), kKnownErrata.end(), v) == kKnownErrata.end())
        return n.error("errata", fmt::format("{} is not an erratum the simulated driver knows; allowed: \"1209401\" "
                                             "(MMU-600, clears nesting), \"2268618\", \"2812531\" (MMU-700, clear "
                                             "nesting; 2812531 also forces a sync after every command batch), \"T264-SMMU-3\" (TLBI/CFGI + "
                                             "SYNC must be issued twice; reported in IOMMU_GET_HW_INFO's flags)", e.dump()));
      s.errata.push_back(v);
    }
  }
  // The software MSI window its driver reserves (IOMMU_RESV_SW_MSI): arm-smmu-v3's unless the profile says.
  VSMMU_TRY_ASSIGN(auto window, n.array("msi_window", false));
  if (window) {
    if (window->size() != 2)
      return n.error("msi_window", fmt::format("has {} values; allowed: exactly 2 (base, size)", window->size()));
    VSMMU_TRY_ASSIGN(auto base, n.number_value((*window)[0], "msi_window[0]", 0, (1ULL << 48) - 1));
    VSMMU_TRY_ASSIGN(auto size, n.number_value((*window)[1], "msi_window[1]", 1, 1ULL << 32));
    if (base % 4096 != 0 || size % 4096 != 0)
      return n.error("msi_window", fmt::format("[{:#x}, {:#x}] is not 4 KiB aligned; base and size must be", base, size));
    s.msi_window = IovaRange{base, base + size - 1};
  }
  VSMMU_TRY(n.no_unknown_keys());

  // What the simulated host needs of the hardware it runs on.
  const smmu::IdFeatures id = s.features();
  if (!id.s2p)
    return n.error("stage2", "is false; the simulated host implements every paging domain at stage 2, so each SMMU "
                             "needs stage 2 (S2P)");
  if (!id.gran4k)
    return n.error("granules", "lacks \"4K\"; the simulated host's page size is 4KB, so each SMMU needs the 4KB granule");
  if (id.oas_bits() < 40)
    return n.error("oas_bits", fmt::format("is {}; the simulated host's physical memory map needs at least 40", id.oas_bits()));
  if (id.ttf != smmu::Ttf::aarch64 || id.ttendian != smmu::TtEndian::little)
    return n.error("idr", "IDR0 must say AArch64 tables (TTF = 2) and little-endian (TTENDIAN = 2): the model walks nothing else");
  return s;
}

Result<RootComplexSpec> parse_root_complex(const json& j, std::string path, std::string_view source,
                                           const HardwareProfile& hw) {
  if (!j.is_object()) return fail(EINVAL, kWhere, "{}: {}: must be an object", source, path);
  Node n(j, std::move(path), source);
  RootComplexSpec rc;
  VSMMU_TRY_ASSIGN(auto name, n.string("name"));
  VSMMU_TRY(check_unique_name(n, hw.root_complexes, name));
  rc.name = name;
  VSMMU_TRY_ASSIGN(auto smmu_index, find_named(n, "smmu", hw.smmus, "SMMU"));
  rc.smmu = smmu_index;
  VSMMU_TRY_ASSIGN(auto seg, n.number("segment", 0, 0xffff, 0));
  rc.segment = static_cast<std::uint16_t>(seg);
  VSMMU_TRY_ASSIGN(auto canwbs, n.boolean("canwbs", false));
  rc.canwbs = canwbs;
  VSMMU_TRY_ASSIGN(auto ats, n.boolean("ats", false));
  rc.ats = ats;
  VSMMU_TRY(n.no_unknown_keys());
  for (const auto& other : hw.root_complexes)
    if (other.segment == rc.segment)
      return n.error("segment", fmt::format("{} is also the segment of root complex \"{}\"; each root complex has its own",
                                            rc.segment, other.name));
  return rc;
}

Result<DeviceSpec> parse_device(const json& j, std::string path, std::string_view source, const HardwareProfile& hw) {
  if (!j.is_object()) return fail(EINVAL, kWhere, "{}: {}: must be an object", source, path);
  Node n(j, std::move(path), source);
  DeviceSpec d;
  VSMMU_TRY_ASSIGN(auto name, n.string("name"));
  VSMMU_TRY(check_unique_name(n, hw.devices, name));
  d.name = name;
  VSMMU_TRY_ASSIGN(auto bdf_text, n.string("bdf"));
  auto parsed = parse_bdf(bdf_text);
  if (!parsed) return n.error("bdf", parsed.error().message);
  Bdf bdf = parsed->bdf;
  VSMMU_TRY_ASSIGN(auto rc, find_named(n, "root_complex", hw.root_complexes, "root complex"));
  d.root_complex = rc;
  const auto& root = hw.root_complexes[rc];
  if (!parsed->has_segment) bdf.segment = root.segment;  // "BB:DD.F" is in its root complex's segment
  if (bdf.segment != root.segment)
    return n.error("bdf", fmt::format("\"{}\" is in segment {:04x}, but root complex \"{}\" is segment {:04x}", bdf_text,
                                      bdf.segment, root.name, root.segment));
  d.bdf = bdf;
  const auto& smmu = hw.smmus[root.smmu];
  const unsigned usable_bits = smmu.usable_sid_bits();
  VSMMU_TRY_ASSIGN(auto sid, n.number("sid", 0, (1ULL << usable_bits) - 1, bdf.rid()));
  d.sid = static_cast<std::uint32_t>(sid);
  if (!n.has("sid") && bdf.rid() >= (1ULL << usable_bits))
    return n.error("bdf", fmt::format("RID {:#x} does not fit SMMU \"{}\"'s {}-bit StreamIDs; give \"sid\"", bdf.rid(),
                                      smmu.name, usable_bits));
  VSMMU_TRY_ASSIGN(auto ats, n.boolean("ats", false));
  d.ats = ats;
  VSMMU_TRY_ASSIGN(auto pasid_bits, n.number("pasid_bits", 0, 20, 0));
  d.pasid_bits = static_cast<unsigned>(pasid_bits);
  VSMMU_TRY_ASSIGN(auto pexec, n.boolean("pasid_exec", false));
  VSMMU_TRY_ASSIGN(auto ppriv, n.boolean("pasid_priv", false));
  d.pasid_exec = pexec;
  d.pasid_priv = ppriv;
  VSMMU_TRY_ASSIGN(auto stall, n.boolean("stall", false));
  d.stall = stall;
  VSMMU_TRY(n.no_unknown_keys());
  for (const auto& other : hw.devices) {
    if (other.bdf.segment == d.bdf.segment && other.bdf.rid() == d.bdf.rid())
      return n.error("bdf", fmt::format("{} is also device \"{}\"'s address", d.bdf.to_string(), other.name));
    if (other.sid == d.sid && hw.root_complexes[other.root_complex].smmu == root.smmu)
      return n.error("sid", fmt::format("{:#x} is also device \"{}\"'s StreamID on SMMU \"{}\"", d.sid, other.name,
                                        smmu.name));
  }
  return d;
}

Result<DmaEngineSpec> parse_dma_engine(const json& j, std::string path, std::string_view source,
                                       const HardwareProfile& hw) {
  if (!j.is_object()) return fail(EINVAL, kWhere, "{}: {}: must be an object", source, path);
  Node n(j, std::move(path), source);
  DmaEngineSpec e;
  VSMMU_TRY_ASSIGN(auto name, n.string("name"));
  VSMMU_TRY(check_unique_name(n, hw.dma_engines, name));
  e.name = name;
  VSMMU_TRY_ASSIGN(auto dev, find_named(n, "device", hw.devices, "device"));
  e.device = dev;
  VSMMU_TRY_ASSIGN(auto burst, n.number("burst_bytes", 1, 1ULL << 30, 4096));
  if ((burst & (burst - 1)) != 0) return n.error("burst_bytes", fmt::format("{} is not a power of two", burst));
  e.burst_bytes = burst;
  VSMMU_TRY_ASSIGN(auto priv, n.boolean("privileged", false));
  e.privileged = priv;
  VSMMU_TRY_ASSIGN(auto retry, n.number("fault_retry_bytes", 0, 1ULL << 30, 0));
  if ((retry & (retry - 1)) != 0)
    return n.error("fault_retry_bytes", fmt::format("{} is not 0 or a power of two", retry));
  e.fault_retry_bytes = retry;
  VSMMU_TRY(n.no_unknown_keys());
  return e;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno ? errno : ENOENT;
    return fail(err, kWhere, "{}: cannot open the profile: {}", path, std::strerror(err));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool looks_like_path(std::string_view s) {
  return s.find('/') != std::string_view::npos || (s.size() > 5 && s.substr(s.size() - 5) == ".json");
}

}  // namespace

unsigned SmmuSpec::usable_sid_bits() const {
  const smmu::IdFeatures id = features();
  return std::min(id.sidsize, id.two_level_stream_table() ? 24U : 16U);
}

std::optional<std::size_t> HardwareProfile::find_device(std::string_view name_or_bdf) const {
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const auto& d = devices[i];
    if (d.name == name_or_bdf || d.bdf.to_string() == name_or_bdf || d.bdf.to_string().substr(5) == name_or_bdf)
      return i;
  }
  return std::nullopt;
}

std::optional<std::size_t> HardwareProfile::find_dma_engine(std::string_view engine) const {
  for (std::size_t i = 0; i < dma_engines.size(); ++i)
    if (dma_engines[i].name == engine) return i;
  return std::nullopt;
}

std::optional<std::size_t> HardwareProfile::find_smmu(std::string_view smmu_name) const {
  for (std::size_t i = 0; i < smmus.size(); ++i)
    if (smmus[i].name == smmu_name) return i;
  return std::nullopt;
}

Result<KernelProfile> parse_kernel_profile(std::string_view json_text, std::string_view source) {
  VSMMU_TRY_ASSIGN(auto j, parse_json(json_text, source));
  Node n(j, "", source);
  VSMMU_TRY(check_kind(n, "kernel"));
  KernelProfile k;
  k.source = std::string(source);
  VSMMU_TRY_ASSIGN(auto name, n.string("name"));
  if (name.empty()) return n.error("name", "is empty");
  k.name = name;
  VSMMU_TRY_ASSIGN(auto desc, n.string("description", std::string()));
  k.description = desc;
  VSMMU_TRY_ASSIGN(auto npd, n.boolean("nest_parent_dirty_tracking", false));
  VSMMU_TRY_ASSIGN(auto strict, n.boolean("strict_invalidation_fields", false));
  VSMMU_TRY_ASSIGN(auto gbpa, n.boolean("nested_attach_without_vdevice", true));
  VSMMU_TRY_ASSIGN(auto ats_cap, n.boolean("ats_not_supported_capability", true));
  VSMMU_TRY_ASSIGN(auto iopf_stall, n.boolean("iopf_attach_needs_stall", false));
  k.iopf_attach_needs_stall = iopf_stall;
  k.nest_parent_dirty_tracking = npd;
  k.strict_invalidation_fields = strict;
  k.nested_attach_without_vdevice = gbpa;
  k.ats_not_supported_capability = ats_cap;
  VSMMU_TRY(n.no_unknown_keys());
  return k;
}

Result<HardwareProfile> parse_hardware_profile(std::string_view json_text, std::string_view source) {
  VSMMU_TRY_ASSIGN(auto j, parse_json(json_text, source));
  Node n(j, "", source);
  VSMMU_TRY(check_kind(n, "hardware"));
  HardwareProfile hw;
  hw.source = std::string(source);
  VSMMU_TRY_ASSIGN(auto name, n.string("name"));
  if (name.empty()) return n.error("name", "is empty");
  hw.name = name;
  VSMMU_TRY_ASSIGN(auto desc, n.string("description", std::string()));
  hw.description = desc;
  // The ITS's two 64 KiB frames, 64 KiB aligned, below the simulated RAM.
  VSMMU_TRY_ASSIGN(auto its, n.number("its_base", 0, kHostRamBase - 2 * ItsDoorbell::kFrameBytes,
                                      ItsDoorbell::kQemuVirtBase));
  if (its % ItsDoorbell::kFrameBytes)
    return n.error("its_base", fmt::format("{:#x} is not 64 KiB aligned: the ITS's frames are 64 KiB each", its));
  hw.its_base = its;

  VSMMU_TRY_ASSIGN(auto smmus, n.array("smmus", true));
  if (smmus->empty()) return n.error("smmus", "is empty; the host needs at least one SMMU");
  for (std::size_t i = 0; i < smmus->size(); ++i) {
    VSMMU_TRY_ASSIGN(auto s, parse_smmu((*smmus)[i], fmt::format("smmus[{}]", i), source, hw.smmus));
    hw.smmus.push_back(std::move(s));
  }
  VSMMU_TRY_ASSIGN(auto rcs, n.array("root_complexes", true));
  for (std::size_t i = 0; i < rcs->size(); ++i) {
    VSMMU_TRY_ASSIGN(auto rc, parse_root_complex((*rcs)[i], fmt::format("root_complexes[{}]", i), source, hw));
    hw.root_complexes.push_back(std::move(rc));
  }
  VSMMU_TRY_ASSIGN(auto devs, n.array("devices", true));
  for (std::size_t i = 0; i < devs->size(); ++i) {
    VSMMU_TRY_ASSIGN(auto d, parse_device((*devs)[i], fmt::format("devices[{}]", i), source, hw));
    hw.devices.push_back(std::move(d));
  }
  VSMMU_TRY_ASSIGN(auto engines, n.array("dma_engines", false));
  if (engines) {
    for (std::size_t i = 0; i < engines->size(); ++i) {
      VSMMU_TRY_ASSIGN(auto e, parse_dma_engine((*engines)[i], fmt::format("dma_engines[{}]", i), source, hw));
      hw.dma_engines.push_back(std::move(e));
    }
  }
  VSMMU_TRY(n.no_unknown_keys());
  return hw;
}

Result<KernelProfile> load_kernel_profile(const std::string& path) {
  VSMMU_TRY_ASSIGN(auto text, read_file(path));
  return parse_kernel_profile(text, path);
}

Result<HardwareProfile> load_hardware_profile(const std::string& path) {
  VSMMU_TRY_ASSIGN(auto text, read_file(path));
  return parse_hardware_profile(text, path);
}

namespace {

std::vector<std::string> embedded_names(std::string_view kind) {
  std::vector<std::string> names;
  for (const auto& p : detail::embedded_profiles())
    if (p.kind == kind) names.emplace_back(p.name);
  return names;
}

Result<std::string_view> embedded_text(std::string_view kind, std::string_view name) {
  for (const auto& p : detail::embedded_profiles())
    if (p.kind == kind && p.name == name) return p.text;
  std::vector<std::string> names;
  for (const auto& e : embedded_names(kind)) names.push_back(fmt::format("\"{}\"", e));
  return fail(ENOENT, kWhere, "no embedded {} profile is called \"{}\"; embedded: {} (or give a path to a JSON file)",
              kind, name, fmt::join(names, ", "));
}

}  // namespace

Result<KernelProfile> embedded_kernel_profile(std::string_view name) {
  VSMMU_TRY_ASSIGN(auto text, embedded_text("kernel", name));
  return parse_kernel_profile(text, fmt::format("embedded:kernel/{}", name));
}

Result<HardwareProfile> embedded_hardware_profile(std::string_view name) {
  VSMMU_TRY_ASSIGN(auto text, embedded_text("hardware", name));
  return parse_hardware_profile(text, fmt::format("embedded:hardware/{}", name));
}

std::vector<std::string> embedded_kernel_profile_names() { return embedded_names("kernel"); }
std::vector<std::string> embedded_hardware_profile_names() { return embedded_names("hardware"); }

Result<KernelProfile> resolve_kernel_profile(std::string_view name_or_path) {
  if (looks_like_path(name_or_path)) return load_kernel_profile(std::string(name_or_path));
  return embedded_kernel_profile(name_or_path);
}

Result<HardwareProfile> resolve_hardware_profile(std::string_view name_or_path) {
  if (looks_like_path(name_or_path)) return load_hardware_profile(std::string(name_or_path));
  return embedded_hardware_profile(name_or_path);
}

}  // namespace vsmmu::host::sim
