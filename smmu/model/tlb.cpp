#include "smmu/model/tlb.hpp"

#include <bit>

namespace vsmmu::smmu::model {

std::size_t Tlb::KeyHash::operator()(const Key& k) const noexcept {
  // splitmix64 finaliser over the page and the tag fields: cheap and well spread for page numbers.
  std::uint64_t h = k.page * 0x9e3779b97f4a7c15ULL;
  h ^= (std::uint64_t{k.vmid} << 48) ^ (std::uint64_t{k.asid} << 32) ^ (std::uint64_t{k.size_log2} << 8) ^
       (static_cast<std::uint64_t>(k.stage) << 4) ^ (std::uint64_t{k.privileged} << 1) ^ std::uint64_t{k.global};
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  return static_cast<std::size_t>(h);
}

Tlb::Key Tlb::key(const TlbRegime& regime, bool global, unsigned size_log2, std::uint64_t input) {
  Key k;
  k.page = size_log2 >= 64 ? 0 : input >> size_log2;
  k.stage = regime.stage;
  k.vmid = regime.stage == TlbStage::s1 ? 0 : regime.vmid;
  k.asid = regime.stage == TlbStage::s2 || global ? 0 : regime.asid;
  k.size_log2 = static_cast<std::uint8_t>(size_log2);
  k.privileged = regime.privileged;
  k.global = global;
  return k;
}

std::optional<TlbEntry> Tlb::lookup(const TlbRegime& regime, std::uint64_t input) const {
  bool try_global = global_entries_ > 0 && regime.stage != TlbStage::s2;
  for (std::uint64_t sizes = sizes_present_; sizes != 0; sizes &= sizes - 1) {
    auto size_log2 = static_cast<unsigned>(std::countr_zero(sizes));
    if (auto it = entries_.find(key(regime, false, size_log2, input)); it != entries_.end()) return it->second;
    if (!try_global) continue;
    if (auto it = entries_.find(key(regime, true, size_log2, input)); it != entries_.end()) return it->second;
  }
  return std::nullopt;
}

void Tlb::insert(const TlbEntry& entry) {
  if (capacity_ == 0) return;
  Key k = key(entry.regime, entry.global, entry.size_log2, entry.input_base);
  if (entries_.size() >= capacity_ && !entries_.contains(k)) {
    auto victim = entries_.begin();
    if (victim->second.global) --global_entries_;
    entries_.erase(victim);
    ++evictions_;
  }
  auto [it, inserted] = entries_.insert_or_assign(k, entry);
  if (inserted && entry.global) ++global_entries_;
  sizes_present_ |= 1ULL << entry.size_log2;
}

bool Tlb::matches(const TlbInvalidation& inv, const TlbEntry& e) const {
  switch (e.regime.stage) {
    case TlbStage::s1:
      if (!inv.s1) return false;
      break;
    case TlbStage::s2:
      if (!inv.s2) return false;
      break;
    case TlbStage::nested:
      if (!inv.nested) return false;
      break;
  }
  if (inv.vmid && e.regime.stage != TlbStage::s1 && e.regime.vmid != *inv.vmid) return false;
  if (inv.asid && e.regime.stage != TlbStage::s2) {
    // Global entries belong to no ASID: an ASID-scoped invalidation without an address leaves them
    // (TLBI_NH_ASID), one by address takes them (TLBI_NH_VA) (IHI 0070 4.4.2.2, 4.4.2.3).
    if (e.global ? !inv.first : e.regime.asid != *inv.asid) return false;
  }
  if (inv.granule && e.granule != *inv.granule) return false;
  if (inv.level && e.level != *inv.level) return false;
  if (inv.first) {
    std::uint64_t e_last = e.input_base + ((1ULL << e.size_log2) - 1);
    std::uint64_t inv_last = inv.size == 0 ? *inv.first : *inv.first + (inv.size - 1);
    if (inv_last < *inv.first) inv_last = ~0ULL;  // a range running off the top of the address space
    if (e_last < *inv.first || e.input_base > inv_last) return false;
  }
  return true;
}

std::size_t Tlb::invalidate(const TlbInvalidation& inv) {
  std::size_t removed = 0;
  std::uint64_t sizes = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (matches(inv, it->second)) {
      if (it->second.global) --global_entries_;
      it = entries_.erase(it);
      ++removed;
    } else {
      sizes |= 1ULL << it->second.size_log2;
      ++it;
    }
  }
  sizes_present_ = sizes;
  return removed;
}

void Tlb::clear() {
  entries_.clear();
  sizes_present_ = 0;
  global_entries_ = 0;
}

TlbInvalidation tlb_invalidation(const Command& cmd, Idr0 idr0, Idr3 idr3) {
  const Opcode op = cmd.get(Command::Opcode);
  TlbInvalidation inv;
  if (idr0.get(Idr0::S2P)) {
    std::uint16_t vmid = cmd.get(Command::VMID);
    if (!idr0.get(Idr0::VMID16)) vmid = static_cast<std::uint8_t>(vmid);
    inv.vmid = vmid;
  }
  std::uint16_t asid = cmd.get(Command::ASID);
  if (!idr0.get(Idr0::ASID16)) asid = static_cast<std::uint8_t>(asid);
  switch (op) {
    case Opcode::TLBI_NH_ALL: inv.s1 = inv.nested = true; break;
    case Opcode::TLBI_NH_ASID:
    case Opcode::TLBI_NH_VA:
      inv.s1 = inv.nested = true;
      inv.asid = asid;
      break;
    case Opcode::TLBI_NH_VAA: inv.s1 = inv.nested = true; break;
    case Opcode::TLBI_S12_VMALL: inv.s2 = inv.nested = true; break;
    case Opcode::TLBI_S2_IPA: inv.s2 = true; break;
    default:  // TLBI_NSNH_ALL: every Non-secure, non-Hyp entry
      inv = TlbInvalidation{};
      inv.s1 = inv.s2 = inv.nested = true;
      break;
  }
  if (op == Opcode::TLBI_NH_VA || op == Opcode::TLBI_NH_VAA || op == Opcode::TLBI_S2_IPA) {
    inv.first = op == Opcode::TLBI_S2_IPA ? cmd.get(Command::IPA) : cmd.get(Command::Address);
    inv.size = 1;
    const auto granule = granule_from_tlbi_tg(static_cast<unsigned>(cmd.get(Command::TG)));
    if (idr3.get(Idr3::RIL) && granule) {
      inv.granule = granule;
      inv.size = (cmd.get(Command::NUM) + 1) << (cmd.get(Command::SCALE) + granule_shift(*granule));
      if (const auto ttl = cmd.get(Command::TTL); ttl != 0) inv.level = static_cast<int>(ttl);
    }
  }
  return inv;
}

}  // namespace vsmmu::smmu::model
