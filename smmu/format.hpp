// One-line, engineer-readable renderings of architecture records for logs and the CLI:
//   fmt::format("{}", ste)  ->  "STE V=1 Config=nested S1Fmt=linear S1ContextPtr=0x8000 ... S2TTB=0x40000000"
//   fmt::format("{}", cmd)  ->  "CMD_TLBI_NH_VA VMID=1 ASID=5 Addr=0x400000 Leaf=1 TG=4K TTL=3 NUM=0 SCALE=0"
//   fmt::format("{}", evt)  ->  "EVT F_TRANSLATION SID=0x10 SSID=- Addr=0x400000 RnW=W ..."
// Only the fields that matter are printed (the opcode's parameters, the event's fields, the STE fields its
// Config uses); a reserved encoding prints as raw hex. The printers live in format.cpp.
#pragma once

#include <concepts>
#include <string>

#include <fmt/format.h>

#include "smmu/cd.hpp"
#include "smmu/command.hpp"
#include "smmu/event.hpp"
#include "smmu/registers.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::smmu {

std::string to_string(const Ste& ste);
std::string to_string(const StreamTableL1& l1);
std::string to_string(const Cd& cd);
std::string to_string(const CdTableL1& l1);
std::string to_string(const Command& cmd);
std::string to_string(const Event& evt);

std::string to_string(const Idr0& r);
std::string to_string(const Idr1& r);
std::string to_string(const Idr2& r);
std::string to_string(const Idr3& r);
std::string to_string(const Idr4& r);
std::string to_string(const Idr5& r);
std::string to_string(const Iidr& r);
std::string to_string(const Aidr& r);
std::string to_string(const Cr0& r);
std::string to_string(const Cr1& r);
std::string to_string(const Cr2& r);
std::string to_string(const Statusr& r);
std::string to_string(const Gbpa& r);
std::string to_string(const IrqCtrl& r);
std::string to_string(const Gerror& r);
std::string to_string(const StrtabBase& r);
std::string to_string(const StrtabBaseCfg& r);
std::string to_string(const QueueBase& r);
std::string to_string(const QueueProd& r);
std::string to_string(const QueueCons& r);
std::string to_string(const IrqCfg0& r);
std::string to_string(const IrqCfg1& r);
std::string to_string(const IrqCfg2& r);

// The types above, and only those: an exact overload must exist (no conversions to a base).
template <class T>
concept Printable = requires(const T& t) {
  { vsmmu::smmu::to_string(t) } -> std::same_as<std::string>;
} && std::derived_from<T, Record<T, T::words>>;

}  // namespace vsmmu::smmu

template <vsmmu::smmu::Printable T>
struct fmt::formatter<T> : fmt::formatter<std::string_view> {
  auto format(const T& rec, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(vsmmu::smmu::to_string(rec), ctx);
  }
};
