// Little-endian access to firmware tables. Reads go through ByteView, which checks every access
// against the end of the buffer: firmware tables are untrusted input (a hostile or broken BIOS, a file
// from a bug report), and a parser bug must never turn into an out-of-bounds read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vsmmu::acpi {

class ByteView {
 public:
  ByteView() = default;
  explicit ByteView(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

  std::size_t size() const { return bytes_.size(); }
  std::span<const std::uint8_t> span() const { return bytes_; }

  // Whether [offset, offset + len) lies inside the buffer; 64-bit arithmetic, so huge counts from a
  // table cannot wrap around.
  bool has(std::uint64_t offset, std::uint64_t len) const {
    return offset <= bytes_.size() && len <= bytes_.size() - offset;
  }

  // Reads of bytes that are not there yield 0. Callers check has() first and report the problem; the
  // zero is a second line of defence, not a value anybody relies on.
  std::uint8_t u8(std::uint64_t offset) const { return static_cast<std::uint8_t>(read(offset, 1)); }
  std::uint16_t u16(std::uint64_t offset) const { return static_cast<std::uint16_t>(read(offset, 2)); }
  std::uint32_t u32(std::uint64_t offset) const { return static_cast<std::uint32_t>(read(offset, 4)); }
  std::uint64_t u64(std::uint64_t offset) const { return read(offset, 8); }

  // The bytes as text (fixed-width ACPI identifiers like OEM IDs); empty when out of bounds.
  std::string text(std::uint64_t offset, std::size_t len) const;

 private:
  std::uint64_t read(std::uint64_t offset, unsigned width) const;
  std::span<const std::uint8_t> bytes_;
};

// Writes `value` as `width` little-endian bytes at `offset`, growing `out` if needed.
void put_le(std::vector<std::uint8_t>& out, std::size_t offset, std::uint64_t value, unsigned width);
// Appends `value` as `width` little-endian bytes.
void append_le(std::vector<std::uint8_t>& out, std::uint64_t value, unsigned width);
// Appends `text` padded with spaces (or cut) to exactly `width` bytes, as ACPI identifiers are stored.
void append_padded(std::vector<std::uint8_t>& out, std::string_view text, std::size_t width);

// The 8-bit sum of all bytes; an ACPI table is valid when the sum over its declared length is 0
// (ACPI 6.5 5.2.6, Checksum).
std::uint8_t byte_sum(std::span<const std::uint8_t> bytes);

}  // namespace vsmmu::acpi
