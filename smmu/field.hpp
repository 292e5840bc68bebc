// Typed, constexpr bit fields of SMMUv3 architecture records (IHI 0070). Every shift-and-mask of an
// architecture field in the project goes through these templates; nothing above smmu/ touches bits.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace vsmmu::smmu {

// Bits [Hi:Lo] of 64-bit word `Word`, read as a right-aligned value of type T (integer, bool or enum).
template <unsigned Word, unsigned Hi, unsigned Lo, class T = std::uint64_t>
struct Field {
  static_assert(Hi < 64 && Lo <= Hi);
  using value_type = T;
  static constexpr unsigned word = Word;
  static constexpr unsigned hi = Hi;
  static constexpr unsigned lo = Lo;
  static constexpr unsigned width = Hi - Lo + 1;
  static constexpr std::uint64_t max = width == 64 ? ~0ULL : (1ULL << width) - 1;
  static constexpr std::uint64_t mask = max << Lo;  // in place, within its word

  static constexpr T extract(std::uint64_t w) { return static_cast<T>((w & mask) >> Lo); }
  static constexpr std::uint64_t raw(std::uint64_t w) { return (w & mask) >> Lo; }
  static constexpr std::uint64_t insert(std::uint64_t w, T v) {
    return (w & ~mask) | ((static_cast<std::uint64_t>(v) << Lo) & mask);
  }
  static constexpr bool fits(T v) { return static_cast<std::uint64_t>(v) <= max; }
};

// Bits [Hi:Lo] of word `Word` holding address bits [Hi:Lo] in place (S1ContextPtr[51:6], S2TTB[51:4] ...):
// the value read is an address whose bits below Lo are zero.
template <unsigned Word, unsigned Hi, unsigned Lo>
struct AddrField {
  static_assert(Hi < 64 && Lo <= Hi);
  using value_type = std::uint64_t;
  static constexpr unsigned word = Word;
  static constexpr unsigned hi = Hi;
  static constexpr unsigned lo = Lo;
  static constexpr unsigned width = Hi - Lo + 1;
  static constexpr std::uint64_t mask = (Hi == 63 ? ~0ULL : (1ULL << (Hi + 1)) - 1) & ~((1ULL << Lo) - 1);

  static constexpr std::uint64_t extract(std::uint64_t w) { return w & mask; }
  static constexpr std::uint64_t raw(std::uint64_t w) { return (w & mask) >> Lo; }
  static constexpr std::uint64_t insert(std::uint64_t w, std::uint64_t addr) {
    return (w & ~mask) | (addr & mask);
  }
  // An address fits when it has no bits outside [Hi:Lo] (alignment and width).
  static constexpr bool fits(std::uint64_t addr) { return (addr & ~mask) == 0; }
};

template <class F>
concept RecordField = requires(std::uint64_t w) {
  { F::word } -> std::convertible_to<unsigned>;
  { F::mask } -> std::convertible_to<std::uint64_t>;
  F::extract(w);
};

// A little-endian record of N 64-bit words (STE: 8, CD: 8, command: 2, event: 4, a register: 1).
// Derived is the concrete format, so setters chain: Ste{}.set(Ste::V, true).set(Ste::Config, ...).
template <class Derived, std::size_t N>
struct Record {
  static constexpr std::size_t words = N;
  static constexpr std::size_t bytes = N * 8;
  std::array<std::uint64_t, N> dw{};

  template <RecordField F>
  constexpr typename F::value_type get(F) const {
    static_assert(F::word < N, "field outside this record");
    return F::extract(dw[F::word]);
  }
  template <RecordField F>
  constexpr Derived& set(F, typename F::value_type v) {
    static_assert(F::word < N, "field outside this record");
    dw[F::word] = F::insert(dw[F::word], v);
    return static_cast<Derived&>(*this);
  }
  // Raw bits of a field, right-aligned, whatever its value type (for printing and masks).
  template <RecordField F>
  constexpr std::uint64_t raw(F) const {
    static_assert(F::word < N, "field outside this record");
    return F::raw(dw[F::word]);
  }

  // Memory layout is little-endian 64-bit words (IHI 0070 3.3: structures are little-endian here).
  static constexpr Derived from_bytes(std::span<const std::byte, N * 8> in) {
    Derived r{};
    for (std::size_t i = 0; i < N; ++i) {
      std::uint64_t w = 0;
      for (std::size_t b = 0; b < 8; ++b) w |= std::uint64_t(std::to_integer<std::uint8_t>(in[i * 8 + b])) << (8 * b);
      r.dw[i] = w;
    }
    return r;
  }
  constexpr void to_bytes(std::span<std::byte, N * 8> out) const {
    for (std::size_t i = 0; i < N; ++i)
      for (std::size_t b = 0; b < 8; ++b) out[i * 8 + b] = std::byte(static_cast<std::uint8_t>(dw[i] >> (8 * b)));
  }
  constexpr std::array<std::byte, N * 8> to_bytes() const {
    std::array<std::byte, N * 8> out{};
    to_bytes(std::span<std::byte, N * 8>(out));
    return out;
  }

  friend constexpr bool operator==(const Record&, const Record&) = default;
};

// Mask of the bits covered by a set of fields within word W (used to derive RES0 / allowed masks).
template <unsigned W, RecordField... Fs>
constexpr std::uint64_t mask_of(Fs...) {
  return (std::uint64_t{0} | ... | (Fs::word == W ? Fs::mask : 0));
}

}  // namespace vsmmu::smmu
