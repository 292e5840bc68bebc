#include "host/bdf.hpp"

#include <charconv>
#include <optional>

#include <fmt/format.h>

namespace vsmmu::host {

namespace {

// `text` as an unsigned hexadecimal number of min_digits to max_digits digits and nothing else.
std::optional<std::uint32_t> hex(std::string_view text, std::size_t min_digits, std::size_t max_digits) {
  if (text.size() < min_digits || text.size() > max_digits) return std::nullopt;
  std::uint32_t v = 0;
  const char* last = text.data() + text.size();
  // from_chars takes no sign, no "0x" and no blanks: exactly the hex digits are left to check.
  auto [ptr, ec] = std::from_chars(text.data(), last, v, 16);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  return v;
}

}  // namespace

std::string Bdf::to_string() const { return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", segment, bus, device, function); }

Result<ParsedBdf> parse_bdf(std::string_view text) {
  ParsedBdf p;
  std::string_view rest = text;
  // The segment is whatever stands before a second ':'.
  const auto first_colon = rest.find(':');
  p.has_segment = first_colon != std::string_view::npos && rest.find(':', first_colon + 1) != std::string_view::npos;
  std::optional<std::uint32_t> segment = 0;
  if (p.has_segment) {
    segment = hex(rest.substr(0, first_colon), 4, 8);
    rest.remove_prefix(first_colon + 1);
  }
  const auto colon = rest.find(':');
  const auto dot = rest.find('.');
  std::optional<std::uint32_t> bus, device, function;
  if (colon != std::string_view::npos && dot != std::string_view::npos && colon < dot) {
    bus = hex(rest.substr(0, colon), 2, 2);
    device = hex(rest.substr(colon + 1, dot - colon - 1), 2, 2);
    function = hex(rest.substr(dot + 1), 1, 1);
  }
  if (!segment || !bus || !device || !function || *device > 0x1f || *function > 7)
    return fail(EINVAL, "host.bdf",
                "\"{}\" is not a PCI address; allowed: \"SSSS:BB:DD.F\" or \"BB:DD.F\" (hexadecimal, device <= 1f, "
                "function <= 7)",
                text);
  p.bdf.segment = *segment;
  p.bdf.bus = static_cast<std::uint8_t>(*bus);
  p.bdf.device = static_cast<std::uint8_t>(*device);
  p.bdf.function = static_cast<std::uint8_t>(*function);
  return p;
}

}  // namespace vsmmu::host
