// state_fuzz: a vSMMU migration state is what a VMM client hands LOAD_STATE (docs/migration.md); whatever its
// bytes, decode_state answers with a state or an error, never a crash. The input is tried as it is (the
// header's checks: magic, version, sizes, CRC-32) and as a body sealed with a correct header
// (seal_state), so the CBOR reader and every field check are reached. A state that decodes must survive
// encode -> decode unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "nesting/migration_state.hpp"

using vsmmu::nesting::decode_state;
using vsmmu::nesting::encode_state;
using vsmmu::nesting::seal_state;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  (void)decode_state(in);
  auto s = decode_state(seal_state(in));
  if (!s) return 0;
  auto again = decode_state(encode_state(*s));
  if (!again || again->registers != s->registers || again->devices.size() != s->devices.size() ||
      again->events.size() != s->events.size() || again->events_lost != s->events_lost || again->name != s->name)
    std::abort();
  return 0;
}
