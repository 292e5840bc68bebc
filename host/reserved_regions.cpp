#include "host/reserved_regions.hpp"

#include <algorithm>
#include <charconv>
#include <cerrno>

#include <fmt/format.h>

namespace vsmmu::host {

namespace {

constexpr const char* kWhere = "reserved_regions";

// "0x" then 1-16 hex digits, the whole token.
std::optional<std::uint64_t> hex_address(std::string_view token) {
  if (!token.starts_with("0x") || token.size() < 3 || token.size() > 18) return std::nullopt;
  std::uint64_t v = 0;
  const auto* end = token.data() + token.size();
  const auto [ptr, ec] = std::from_chars(token.data() + 2, end, v, 16);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return v;
}

std::optional<ReservedRegionType> type_of(std::string_view word) {
  for (auto t : {ReservedRegionType::direct, ReservedRegionType::direct_relaxable, ReservedRegionType::reserved,
                 ReservedRegionType::msi})
    if (to_string(t) == word) return t;
  return std::nullopt;
}

std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::string_view to_string(ReservedRegionType t) {
  switch (t) {
    case ReservedRegionType::direct: return "direct";
    case ReservedRegionType::direct_relaxable: return "direct-relaxable";
    case ReservedRegionType::reserved: return "reserved";
    case ReservedRegionType::msi: return "msi";
  }
  return "?";
}

std::string to_string(const IovaRange& r) { return fmt::format("{:#x}-{:#x}", r.start, r.last); }

Result<std::vector<ReservedRegion>> parse_reserved_regions(std::string_view text, std::string_view source) {
  std::vector<ReservedRegion> out;
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    const auto t = tokens(line);
    if (t.empty()) continue;  // the file ends with a newline; a blank line carries nothing
    auto bad = [&](std::string_view why) {
      return fail(EINVAL, kWhere,
                  "{} line {}: '{}': {} (expected \"0x<start> 0x<end> <type>\", type direct, direct-relaxable, "
                  "reserved or msi, as drivers/iommu/iommu.c iommu_group_show_resv_regions writes it)",
                  source, number, line, why);
    };
    if (t.size() != 3) return bad(fmt::format("{} fields instead of 3", t.size()));
    const auto start = hex_address(t[0]);
    if (!start) return bad(fmt::format("the start '{}' is not a 0x-prefixed 64-bit hex number", t[0]));
    const auto last = hex_address(t[1]);
    if (!last) return bad(fmt::format("the end '{}' is not a 0x-prefixed 64-bit hex number", t[1]));
    if (*last < *start) return bad("the end (inclusive) is below the start");
    const auto type = type_of(t[2]);
    if (!type) return bad(fmt::format("unknown type '{}'", t[2]));
    out.push_back(ReservedRegion{IovaRange{*start, *last}, *type});
  }
  return out;
}

std::optional<IovaRange> msi_window(std::span<const ReservedRegion> regions) {
  std::optional<IovaRange> best;
  for (const auto& r : regions)
    if (r.type == ReservedRegionType::msi && (!best || r.range.start < best->start)) best = r.range;
  return best;
}

std::optional<IovaRange> allowed_overlap(const IovaRange& window, std::span<const IovaRange> allowed) {
  for (const auto& r : allowed)
    if (window.overlaps(r.start, r.size())) return r;
  return std::nullopt;
}

}  // namespace vsmmu::host
