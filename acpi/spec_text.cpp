#include "acpi/spec_text.hpp"

#include "base/try.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <optional>
#include <vector>

#include <fmt/format.h>

namespace vsmmu::acpi::text {
namespace {

struct Item {
  std::string_view key;
  std::optional<std::string_view> value;
};

// Splits "a=1,b,c=0x2" and refuses keys outside `allowed` (so a typo is not silently a default).
Result<std::vector<Item>> items(std::string_view spec, std::initializer_list<std::string_view> allowed) {
  std::vector<Item> out;
  while (!spec.empty()) {
    const auto comma = spec.find(',');
    const auto part = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    Item item{part.substr(0, eq), eq == std::string_view::npos ? std::nullopt : std::optional(part.substr(eq + 1))};
    if (std::find(allowed.begin(), allowed.end(), item.key) == allowed.end()) {
      std::string names;
      for (auto a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      return fail(EINVAL, "spec", "unknown key '{}' in '{}'; the keys are: {}", item.key, part, names);
    }
    for (const auto& seen : out)
      if (seen.key == item.key) return fail(EINVAL, "spec", "'{}' is given twice", item.key);
    out.push_back(item);
  }
  return out;
}

Result<std::uint32_t> u32(const Item& item) {
  if (!item.value) return fail(EINVAL, "spec", "'{}' needs a value ({}=NUMBER)", item.key, item.key);
  VSMMU_TRY_ASSIGN(auto n, number(*item.value, item.key));
  if (n > 0xffffffffULL) return fail(ERANGE, "spec", "{}={} does not fit 32 bits", item.key, *item.value);
  return static_cast<std::uint32_t>(n);
}

Result<void> flag(const Item& item) {
  if (item.value) return fail(EINVAL, "spec", "'{}' is a flag and takes no value", item.key);
  return {};
}

}  // namespace

Result<std::uint64_t> number(std::string_view text, std::string_view what) {
  int base = 10;
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  }
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (ec == std::errc::result_out_of_range)
    return fail(ERANGE, "spec", "{} '{}' does not fit 64 bits", what, text);
  if (ec != std::errc{} || end != digits.data() + digits.size() || digits.empty())
    return fail(EINVAL, "spec", "{} '{}' is not a number (decimal, or hex with 0x)", what, text);
  return v;
}

Result<iort::GuestSmmu> guest_smmu(std::string_view spec) {
  VSMMU_TRY_ASSIGN(auto list, items(spec, {"base", "event", "pri", "gerr", "sync", "noncoherent", "msi-devid"}));
  iort::GuestSmmu s;
  bool has_base = false;
  for (const auto& it : list) {
    if (it.key == "noncoherent") {
      VSMMU_TRY(flag(it));
      s.coherent = false;
      continue;
    }
    if (it.key == "base") {
      if (!it.value) return fail(EINVAL, "spec", "'base' needs a value (base=ADDRESS)");
      VSMMU_TRY_ASSIGN(auto n, number(*it.value, "base"));
      s.base = n;
      has_base = true;
      continue;
    }
    VSMMU_TRY_ASSIGN(auto n, u32(it));
    if (it.key == "event") s.event_gsiv = n;
    else if (it.key == "pri") s.pri_gsiv = n;
    else if (it.key == "gerr") s.gerr_gsiv = n;
    else if (it.key == "sync") s.sync_gsiv = n;
    else s.msi_device_id = n;
  }
  if (!has_base) return fail(EINVAL, "spec", "an SMMU spec needs base=ADDRESS: '{}'", spec);
  return s;
}

namespace {

// rid, count and the optional vsid / smmu / segment of a RID map, whichever of them `list` may hold.
Result<GuestMap> map_of(const std::vector<Item>& list, std::string_view spec) {
  GuestMap g;
  bool rid = false, count = false, vsid = false;
  for (const auto& it : list) {
    VSMMU_TRY_ASSIGN(auto n, u32(it));
    if (it.key == "rid") g.map.rid_base = n, rid = true;
    else if (it.key == "count") g.map.count = n, count = true;
    else if (it.key == "vsid") g.map.vsid_base = n, vsid = true;
    else if (it.key == "smmu") g.map.smmu = n;
    else g.segment = n;
  }
  if (!rid || !count) return fail(EINVAL, "spec", "a RID map needs rid=RID and count=N: '{}'", spec);
  if (!vsid) g.map.vsid_base = g.map.rid_base;
  return g;
}

}  // namespace

Result<GuestMap> guest_map(std::string_view spec) {
  VSMMU_TRY_ASSIGN(auto list, items(spec, {"rid", "count", "vsid", "smmu", "segment"}));
  return map_of(list, spec);
}

Result<dt::VsmmuSpec> dt_smmu(std::string_view spec) {
  VSMMU_TRY_ASSIGN(auto list, items(spec, {"base", "size", "eventq", "priq", "cmdq-sync", "gerror", "combined", "noncoherent"}));
  dt::VsmmuSpec s;
  bool has_base = false;
  for (const auto& it : list) {
    if (it.key == "noncoherent") {
      VSMMU_TRY(flag(it));
      s.dma_coherent = false;
    } else if (it.key == "base" || it.key == "size") {
      if (!it.value) return fail(EINVAL, "spec", "'{}' needs a value", it.key);
      VSMMU_TRY_ASSIGN(auto n, number(*it.value, it.key));
      (it.key == "base" ? s.base : s.size) = n;
      has_base = has_base || it.key == "base";
    } else {
      VSMMU_TRY_ASSIGN(auto n, u32(it));
      s.irqs.push_back(dt::Irq{std::string(it.key), n});
    }
  }
  if (!has_base) return fail(EINVAL, "spec", "an SMMU spec needs base=ADDRESS: '{}'", spec);
  // The binding's order (eventq, priq, cmdq-sync, gerror), whatever order the spec named them in.
  constexpr std::string_view order[] = {"eventq", "priq", "cmdq-sync", "gerror", "combined"};
  auto rank = [&](const dt::Irq& i) { return std::find(std::begin(order), std::end(order), i.name) - std::begin(order); };
  std::stable_sort(s.irqs.begin(), s.irqs.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  return s;
}

Result<dt::IommuMap> dt_map(std::string_view spec) {
  VSMMU_TRY_ASSIGN(auto list, items(spec, {"rid", "count", "vsid"}));
  VSMMU_TRY_ASSIGN(auto g, map_of(list, spec));
  return dt::IommuMap{g.map.rid_base, g.map.vsid_base, g.map.count};
}

}  // namespace vsmmu::acpi::text
