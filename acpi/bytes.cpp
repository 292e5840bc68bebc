#include "acpi/bytes.hpp"

namespace vsmmu::acpi {

std::uint64_t ByteView::read(std::uint64_t offset, unsigned width) const {
  if (!has(offset, width)) return 0;
  std::uint64_t v = 0;
  for (unsigned i = 0; i < width; ++i) v |= std::uint64_t{bytes_[offset + i]} << (8 * i);
  return v;
}

std::string ByteView::text(std::uint64_t offset, std::size_t len) const {
  if (!has(offset, len)) return {};
  std::string s;
  s.reserve(len);
  for (std::size_t i = 0; i < len; ++i) s.push_back(static_cast<char>(bytes_[offset + i]));
  return s;
}

void put_le(std::vector<std::uint8_t>& out, std::size_t offset, std::uint64_t value, unsigned width) {
  if (out.size() < offset + width) out.resize(offset + width);
  for (unsigned i = 0; i < width; ++i) out[offset + i] = static_cast<std::uint8_t>(value >> (8 * i));
}

void append_le(std::vector<std::uint8_t>& out, std::uint64_t value, unsigned width) {
  put_le(out, out.size(), value, width);
}

void append_padded(std::vector<std::uint8_t>& out, std::string_view text, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i)
    out.push_back(i < text.size() ? static_cast<std::uint8_t>(text[i]) : std::uint8_t{' '});
}

std::uint8_t byte_sum(std::span<const std::uint8_t> bytes) {
  unsigned sum = 0;
  for (auto b : bytes) sum += b;
  return static_cast<std::uint8_t>(sum);
}

}  // namespace vsmmu::acpi
