#include "tools/wish_flags.hpp"

#include "base/try.hpp"

#include <charconv>
#include <optional>

namespace vsmmu::tools {
namespace {

constexpr const char* kWhere = "wishes";

Result<std::optional<unsigned>> bits_value(std::string_view flag, std::string_view v) {
  if (v == "auto") return std::optional<unsigned>{};
  unsigned n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n > 64)
    return fail(EINVAL, kWhere, "{} takes auto or a number of bits (0-64), not '{}'", flag, v);
  return std::optional<unsigned>(n);
}

Result<std::optional<bool>> switch_value(std::string_view flag, std::string_view v) {
  if (v == "auto") return std::optional<bool>{};
  if (v == "on") return std::optional<bool>(true);
  if (v == "off") return std::optional<bool>(false);
  return fail(EINVAL, kWhere, "{} takes auto, on or off, not '{}'", flag, v);
}

}  // namespace

Result<bool> parse_wish_flag(std::span<const std::string_view> args, std::size_t& i, nesting::VsmmuWishes& w) {
  const std::string_view flag = args[i];
  std::optional<unsigned>* bits = flag == "--ipa-bits"    ? &w.ipa_bits
                                  : flag == "--oas-bits"  ? &w.oas_bits
                                  : flag == "--ssid-bits" ? &w.ssid_bits
                                                          : nullptr;
  std::optional<bool>* on_off = flag == "--ril"     ? &w.ril
                                : flag == "--ats"   ? &w.ats
                                : flag == "--msi"   ? &w.msi
                                : flag == "--stall" ? &w.stall
                                                    : nullptr;
  if (!bits && !on_off) return false;
  if (i + 1 >= args.size())
    return fail(EINVAL, kWhere, "{} needs a value: auto or {}", flag, bits ? "a number of bits" : "on or off");
  const std::string_view v = args[++i];
  if (bits) {
    VSMMU_TRY_ASSIGN(*bits, bits_value(flag, v));
  } else {
    VSMMU_TRY_ASSIGN(*on_off, switch_value(flag, v));
  }
  return true;
}

}  // namespace vsmmu::tools
