#include "nesting/migration_state.hpp"

#include <array>
#include <cstring>
#include <utility>

#include <boost/crc.hpp>
#include <nlohmann/json.hpp>

namespace vsmmu::nesting {

namespace {

constexpr const char* kWhere = "vsmmu.state";
constexpr std::array<char, 8> kMagic{'V', 'S', 'M', 'M', 'U', 'S', 'T', 'A'};

using json = nlohmann::json;

// Every register of RegisterState, by its architectural name: one table for encode and decode.
template <class T>
using Member = T smmu::RegisterState::*;
constexpr std::array<std::pair<const char*, Member<std::uint32_t>>, 19> kRegs32{{
    {"CR0", &smmu::RegisterState::CR0}, {"CR1", &smmu::RegisterState::CR1}, {"CR2", &smmu::RegisterState::CR2},
    {"GBPA", &smmu::RegisterState::GBPA}, {"IRQ_CTRL", &smmu::RegisterState::IRQ_CTRL},
    {"GERROR", &smmu::RegisterState::GERROR}, {"GERRORN", &smmu::RegisterState::GERRORN},
    {"GERROR_IRQ_CFG1", &smmu::RegisterState::GERROR_IRQ_CFG1}, {"GERROR_IRQ_CFG2", &smmu::RegisterState::GERROR_IRQ_CFG2},
    {"STRTAB_BASE_CFG", &smmu::RegisterState::STRTAB_BASE_CFG},
    {"CMDQ_PROD", &smmu::RegisterState::CMDQ_PROD}, {"CMDQ_CONS", &smmu::RegisterState::CMDQ_CONS},
    {"EVENTQ_PROD", &smmu::RegisterState::EVENTQ_PROD}, {"EVENTQ_CONS", &smmu::RegisterState::EVENTQ_CONS},
    {"EVENTQ_IRQ_CFG1", &smmu::RegisterState::EVENTQ_IRQ_CFG1}, {"EVENTQ_IRQ_CFG2", &smmu::RegisterState::EVENTQ_IRQ_CFG2},
    {"PRIQ_PROD", &smmu::RegisterState::PRIQ_PROD}, {"PRIQ_CONS", &smmu::RegisterState::PRIQ_CONS},
    {"PRIQ_IRQ_CFG1", &smmu::RegisterState::PRIQ_IRQ_CFG1},
}};
constexpr std::array<std::pair<const char*, Member<std::uint64_t>>, 7> kRegs64{{
    {"GERROR_IRQ_CFG0", &smmu::RegisterState::GERROR_IRQ_CFG0}, {"STRTAB_BASE", &smmu::RegisterState::STRTAB_BASE},
    {"CMDQ_BASE", &smmu::RegisterState::CMDQ_BASE}, {"EVENTQ_BASE", &smmu::RegisterState::EVENTQ_BASE},
    {"EVENTQ_IRQ_CFG0", &smmu::RegisterState::EVENTQ_IRQ_CFG0}, {"PRIQ_BASE", &smmu::RegisterState::PRIQ_BASE},
    {"PRIQ_IRQ_CFG0", &smmu::RegisterState::PRIQ_IRQ_CFG0},
}};
static_assert(sizeof(smmu::RegisterState) >= (kRegs32.size() + 1) * 4 + kRegs64.size() * 8,
              "every RegisterState member is in kRegs32 or kRegs64 (PRIQ_IRQ_CFG2 is added by hand)");

std::uint32_t crc32(std::span<const std::byte> bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

template <class T>
void put(std::vector<std::byte>& out, std::size_t at, T v) {
  std::memcpy(out.data() + at, &v, sizeof v);
}
template <class T>
T get(std::span<const std::byte> in, std::size_t at) {
  T v{};
  std::memcpy(&v, in.data() + at, sizeof v);
  return v;
}

const char* state_key(StreamState s) { return state_name(s); }
std::optional<StreamState> state_of(const std::string& s) {
  for (StreamState v : {StreamState::blocked, StreamState::abort, StreamState::bypass, StreamState::translate})
    if (s == state_name(v)) return v;
  return std::nullopt;
}

// A field of the body, or why it cannot be read.
template <class T>
Result<T> field(const json& j, const char* key, const char* where) {
  const auto it = j.find(key);
  if (it == j.end()) return fail(EBADMSG, kWhere, "the state's {} has no \"{}\"", where, key);
  try {
    return it->template get<T>();
  } catch (const json::exception& e) {
    return fail(EBADMSG, kWhere, "the state's {}.{} has the wrong type: {}", where, key, e.what());
  }
}

// Names in a state go into the destination's log lines and into the errors LOAD_STATE answers with, so a
// control character (C0 or DEL: a newline, an escape sequence) is refused rather than written there.
Result<void> text_name(const std::string& name, std::string_view what) {
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f)
      return fail(EBADMSG, kWhere, "the state's {} has a control character ({:#04x}) at byte {}; names are text", what,
                  c, i);
  }
  return {};
}

}  // namespace

std::vector<std::byte> encode_state(const VsmmuState& s) {
  json body;
  body["format"] = "vsmmu-state";
  body["name"] = s.name;
  body["id_registers"] = {{"IDR0", s.ids.idr0.value()}, {"IDR1", s.ids.idr1.value()}, {"IDR2", s.ids.idr2.value()},
                          {"IDR3", s.ids.idr3.value()}, {"IDR4", s.ids.idr4.value()}, {"IDR5", s.ids.idr5.value()},
                          {"IIDR", s.ids.iidr.value()}, {"AIDR", s.ids.aidr.value()}};
  json regs = json::object();
  for (const auto& [name, m] : kRegs32) regs[name] = s.registers.*m;
  regs["PRIQ_IRQ_CFG2"] = s.registers.PRIQ_IRQ_CFG2;
  for (const auto& [name, m] : kRegs64) regs[name] = s.registers.*m;
  body["registers"] = std::move(regs);
  json devices = json::array();
  for (const auto& d : s.devices) devices.push_back({{"vsid", d.vsid}, {"name", d.name}, {"state", state_key(d.state)}});
  body["devices"] = std::move(devices);
  json events = json::array();
  for (const auto& e : s.events) events.push_back(json::array({e.dw[0], e.dw[1], e.dw[2], e.dw[3]}));
  body["events"] = std::move(events);
  body["events_lost"] = s.events_lost;

  const std::vector<std::uint8_t> cbor = json::to_cbor(body);
  return seal_state(std::as_bytes(std::span(cbor)));
}

std::vector<std::byte> seal_state(std::span<const std::byte> body) {
  std::vector<std::byte> out(kStateHeaderSize + body.size());
  std::memcpy(out.data(), kMagic.data(), kMagic.size());
  put<std::uint32_t>(out, 8, kStateFormatVersion);
  put<std::uint32_t>(out, 12, static_cast<std::uint32_t>(kStateHeaderSize));
  put<std::uint64_t>(out, 16, body.size());
  std::memcpy(out.data() + kStateHeaderSize, body.data(), body.size());
  put<std::uint32_t>(out, 24, crc32(body));
  put<std::uint32_t>(out, 28, 0);
  return out;
}

Result<VsmmuState> decode_state(std::span<const std::byte> blob) {
  if (blob.size() < kMagic.size() || std::memcmp(blob.data(), kMagic.data(), kMagic.size()) != 0)
    return fail(EBADMSG, kWhere, "not a vSMMU state: it does not begin with \"VSMMUSTA\" ({} bytes)", blob.size());
  if (blob.size() < kStateHeaderSize)
    return fail(EBADMSG, kWhere, "the state is truncated: {} bytes, shorter than its {}-byte header", blob.size(),
                kStateHeaderSize);
  const auto version = get<std::uint32_t>(blob, 8);
  if (version != kStateFormatVersion)
    return fail(EPROTONOSUPPORT, kWhere, "the state is format version {}; this vsmmu reads version {} (save it with a "
                "vsmmu that writes version {})", version, kStateFormatVersion, kStateFormatVersion);
  const auto header = get<std::uint32_t>(blob, 12);
  const auto body_size = get<std::uint64_t>(blob, 16);
  if (header != kStateHeaderSize)
    return fail(EBADMSG, kWhere, "the state's header says it is {} bytes; version {} headers are {}", header, version,
                kStateHeaderSize);
  if (body_size != blob.size() - kStateHeaderSize)
    return fail(EBADMSG, kWhere, "the state is {}: its header announces a {}-byte body, {} bytes follow",
                body_size > blob.size() - kStateHeaderSize ? "truncated" : "followed by extra bytes", body_size,
                blob.size() - kStateHeaderSize);
  const auto body = blob.subspan(kStateHeaderSize);
  const std::uint32_t want = get<std::uint32_t>(blob, 24);
  if (const std::uint32_t got = crc32(body); got != want)
    return fail(EBADMSG, kWhere, "the state is corrupted: its body's CRC-32 is {:#010x}, the header says {:#010x}", got,
                want);
  json j;
  try {
    j = json::from_cbor(reinterpret_cast<const std::uint8_t*>(body.data()),
                        reinterpret_cast<const std::uint8_t*>(body.data()) + body.size());
  } catch (const json::exception& e) {
    return fail(EBADMSG, kWhere, "the state's body is not CBOR: {}", e.what());
  }
  // A "format" of any other type is refused like a missing one (json::value would throw on it).
  const auto format = j.is_object() ? j.find("format") : j.end();
  if (format == j.end() || !format->is_string() || format->get_ref<const std::string&>() != "vsmmu-state")
    return fail(EBADMSG, kWhere, "the state's body is not a vsmmu-state map (its \"format\" must be \"vsmmu-state\")");

  VsmmuState s;
  VSMMU_TRY_ASSIGN(s.name, field<std::string>(j, "name", "body"));
  VSMMU_TRY(text_name(s.name, "vSMMU name"));
  VSMMU_TRY_ASSIGN(const json ids, field<json>(j, "id_registers", "body"));
  VSMMU_TRY_ASSIGN(const auto idr0, field<std::uint32_t>(ids, "IDR0", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto idr1, field<std::uint32_t>(ids, "IDR1", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto idr2, field<std::uint32_t>(ids, "IDR2", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto idr3, field<std::uint32_t>(ids, "IDR3", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto idr4, field<std::uint32_t>(ids, "IDR4", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto idr5, field<std::uint32_t>(ids, "IDR5", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto iidr, field<std::uint32_t>(ids, "IIDR", "id_registers"));
  VSMMU_TRY_ASSIGN(const auto aidr, field<std::uint32_t>(ids, "AIDR", "id_registers"));
  s.ids = {smmu::Idr0::of(idr0), smmu::Idr1::of(idr1), smmu::Idr2::of(idr2), smmu::Idr3::of(idr3),
           smmu::Idr4::of(idr4), smmu::Idr5::of(idr5), smmu::Iidr::of(iidr), smmu::Aidr::of(aidr)};
  VSMMU_TRY_ASSIGN(const json regs, field<json>(j, "registers", "body"));
  for (const auto& [name, m] : kRegs32) {
    VSMMU_TRY_ASSIGN(s.registers.*m, field<std::uint32_t>(regs, name, "registers"));
  }
  VSMMU_TRY_ASSIGN(s.registers.PRIQ_IRQ_CFG2, field<std::uint32_t>(regs, "PRIQ_IRQ_CFG2", "registers"));
  for (const auto& [name, m] : kRegs64) {
    VSMMU_TRY_ASSIGN(s.registers.*m, field<std::uint64_t>(regs, name, "registers"));
  }
  VSMMU_TRY_ASSIGN(const json devices, field<json>(j, "devices", "body"));
  if (!devices.is_array()) return fail(EBADMSG, kWhere, "the state's devices are not a list");
  for (const auto& d : devices) {
    SavedDevice sd;
    VSMMU_TRY_ASSIGN(sd.vsid, field<std::uint32_t>(d, "vsid", "device"));
    VSMMU_TRY_ASSIGN(sd.name, field<std::string>(d, "name", "device"));
    VSMMU_TRY(text_name(sd.name, fmt::format("device name at vSID {:#x}", sd.vsid)));
    VSMMU_TRY_ASSIGN(const auto state, field<std::string>(d, "state", "device"));
    const auto st = state_of(state);
    if (!st) return fail(EBADMSG, kWhere, "device vSID {:#x} has an unknown stream state \"{}\"", sd.vsid, state);
    sd.state = *st;
    s.devices.push_back(std::move(sd));
  }
  VSMMU_TRY_ASSIGN(const json events, field<json>(j, "events", "body"));
  if (!events.is_array()) return fail(EBADMSG, kWhere, "the state's events are not a list");
  for (const auto& e : events) {
    std::vector<std::uint64_t> dw;
    try {
      dw = e.get<std::vector<std::uint64_t>>();
    } catch (const json::exception& x) {
      return fail(EBADMSG, kWhere, "an event record of the state is not four doublewords: {}", x.what());
    }
    if (dw.size() != 4) return fail(EBADMSG, kWhere, "an event record of the state has {} doublewords, not 4", dw.size());
    smmu::Event ev;
    for (std::size_t i = 0; i < 4; ++i) ev.dw[i] = dw[i];
    s.events.push_back(ev);
  }
  VSMMU_TRY_ASSIGN(s.events_lost, field<std::uint64_t>(j, "events_lost", "body"));
  return s;
}

}  // namespace vsmmu::nesting
