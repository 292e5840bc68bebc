// e2e_kernel_host: the project's kernel host (host/kernel) against the real arm-smmu-v3 + iommufd
// driver, in the e2e guest on QEMU's edu device behind QEMU's SMMUv3 (stage 1 + stage 2, no S2FWB, no HTTU).
// It checks what the driver refuses and that the project's errors explain it:
//   --iort no-canwbs  QEMU's own IORT: IOMMU_VIOMMU_ALLOC fails EOPNOTSUPP, and the error names the missing
//                     S2FWB and CANWBS;
//   --iort canwbs     booted with the CANWBS IORT override: the vIOMMU, a vDEVICE, a vEVENTQ and a nested
//                     HWPT are allocated, vIOMMU invalidation behaves as the driver does (entry_num bounds
//                     included), and the vEVENTQ's depth bound and empty/short reads are the kernel's;
// and in both NEST_PARENT|DIRTY_TRACKING is refused with EOPNOTSUPP and "this kernel has no nested dirty
// tracking". Prints one line per check ("ok" or "FAILED") and exits 1 if any failed.
//
// Usage: e2e_kernel_host --iort canwbs|no-canwbs [--device /dev/vfio/devices/vfio0]
#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/handles.hpp"
#include "host/kernel/kernel_host.hpp"
#include "smmu/command.hpp"
#include "smmu/registers.hpp"
#include "smmu/ste.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::host;

int failures = 0;
int passes = 0;

void check(bool ok, std::string_view name, std::string_view detail) {
  (ok ? passes : failures)++;
  fmt::print("{} {}: {}\n", ok ? "ok    " : "FAILED", name, detail);
}

// A call that must succeed; returns its value.
template <class T>
std::optional<T> must(Result<T> r, std::string_view name) {
  if (!r) {
    check(false, name, r.error().to_string());
    return std::nullopt;
  }
  check(true, name, "succeeded");
  return std::move(*r);
}

bool must(Result<void> r, std::string_view name) {
  check(r.has_value(), name, r ? "succeeded" : r.error().to_string());
  return r.has_value();
}

// A call that must fail with err and a message holding every one of words.
template <class T>
void refused(const Result<T>& r, std::string_view name, int err, std::initializer_list<std::string_view> words) {
  if (r) {
    check(false, name, fmt::format("succeeded; expected {} ({})", strerrorname_np(err), std::strerror(err)));
    return;
  }
  std::string missing;
  for (auto w : words)
    if (r.error().message.find(w) == std::string::npos) missing += fmt::format(" '{}'", w);
  check(r.error().err == err && missing.empty(), name,
        fmt::format("{}{}", r.error().to_string(),
                    r.error().err != err ? fmt::format(" [expected {}]", strerrorname_np(err))
                    : missing.empty()    ? std::string()
                                         : fmt::format(" [the message lacks{}]", missing)));
}

std::array<std::byte, 16> vste(smmu::StreamConfig config) {
  const auto all = smmu::Ste{}.set(smmu::Ste::V, true).set(smmu::Ste::Config, config).to_bytes();
  std::array<std::byte, 16> out{};
  std::memcpy(out.data(), all.data(), out.size());
  return out;
}

InvalidateRequest invalidation(ObjectId viommu, std::span<const std::byte> data, std::uint32_t entries) {
  return InvalidateRequest{.id = viommu, .entry_num = entries, .data = data};
}

void report_invalidate(const InvalidateOutcome& out, std::string_view name, std::optional<int> err,
                       std::uint32_t handled) {
  const bool ok = (err ? out.error && out.error->err == *err : !out.error) && out.handled == handled;
  check(ok, name,
        fmt::format("{}, {} handled{}", out.error ? out.error->to_string() : "succeeded", out.handled,
                    ok ? "" : fmt::format(" [expected {}, {} handled]", err ? strerrorname_np(*err) : "0", handled)));
}

int run(bool canwbs, const std::string& device) {
  auto opened = KernelHost::open();
  if (!opened) {
    check(false, "open /dev/iommu", opened.error().to_string());
    return 1;
  }
  KernelHost& host = **opened;
  fmt::print("kernel {}\n", host.kernel_release());
  const auto dev = must(host.bind_device(device), fmt::format("bind {}", device));
  if (!dev) return 1;

  if (const auto info = must(host.get_hw_info(*dev), "IOMMU_GET_HW_INFO")) {
    fmt::print("  type {} flags {:#x} idr {:#010x} {:#010x} {:#010x} {:#010x} {:#010x} {:#010x} iidr {:#x} aidr {:#x} "
               "capabilities {:#x} max_pasid_log2 {}\n",
               info->type, info->flags, info->idr[0], info->idr[1], info->idr[2], info->idr[3], info->idr[4],
               info->idr[5], info->iidr, info->aidr, info->capabilities, info->max_pasid_log2);
    const auto idr0 = smmu::Idr0::of(info->idr[0]);
    const auto idr3 = smmu::Idr3::of(info->idr[3]);
    check(info->type == uapi::kHwInfoTypeArmSmmuv3 && idr0.get(smmu::Idr0::S1P) && idr0.get(smmu::Idr0::S2P) &&
              !idr3.get(smmu::Idr3::FWB),
          "QEMU's SMMUv3 as GET_HW_INFO shows it",
          fmt::format("type {} (2 is ARM SMMUv3), S1P {:d}, S2P {:d}, S2FWB {:d} (expected 2, 1, 1, 0)", info->type,
                      idr0.get(smmu::Idr0::S1P), idr0.get(smmu::Idr0::S2P), idr3.get(smmu::Idr3::FWB)));
  }

  const auto ioas_id = must(host.ioas_alloc(), "IOMMU_IOAS_ALLOC");
  if (!ioas_id) return 1;
  HostObject ioas(host, *ioas_id);

  refused(host.hwpt_alloc(
              paging_request(*dev, ioas.id(), uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking)),
          "IOMMU_HWPT_ALLOC(NEST_PARENT|DIRTY_TRACKING) refused", EOPNOTSUPP, {"no nested dirty tracking"});
  refused(host.hwpt_alloc(paging_request(*dev, ioas.id(), uapi::kHwptAllocDirtyTracking)),
          "IOMMU_HWPT_ALLOC(DIRTY_TRACKING) refused without HTTU", EOPNOTSUPP, {"HTTU"});

  const auto parent_id =
      must(host.hwpt_alloc(paging_request(*dev, ioas.id(), uapi::kHwptAllocNestParent)),
           "IOMMU_HWPT_ALLOC(NEST_PARENT)");
  if (!parent_id) return 1;
  HostObject parent(host, *parent_id);
  must(host.attach(*dev, parent.id()), "VFIO_DEVICE_ATTACH_IOMMUFD_PT(nest parent)");

  auto viommu_id = host.viommu_alloc(*dev, parent.id(), uapi::kViommuTypeArmSmmuv3);
  if (!canwbs) {
    refused(viommu_id, "IOMMU_VIOMMU_ALLOC refused without CANWBS", EOPNOTSUPP, {"S2FWB", "CANWBS", "vsmmu iort"});
    must(host.detach(*dev), "VFIO_DEVICE_DETACH_IOMMUFD_PT");
    return failures ? 1 : 0;
  }
  const auto viommu_ok = must(std::move(viommu_id), "IOMMU_VIOMMU_ALLOC with CANWBS");
  if (!viommu_ok) return 1;
  HostObject viommu(host, *viommu_ok);

  constexpr std::uint64_t kVsid = 0x10;
  std::optional<HostObject> vdevice;
  if (auto id = must(host.vdevice_alloc(viommu.id(), *dev, kVsid), "IOMMU_VDEVICE_ALLOC(vSID 0x10)"))
    vdevice.emplace(host, *id);
  // drivers/iommu/iommufd/eventq.c: iommufd_veventq_alloc bounds the depth by VEVENTQ_MAX_DEPTH (1 << 19);
  // iommufd_veventq_fops_read never blocks: an empty queue reads 0, a buffer shorter than a header is EINVAL.
  refused(host.veventq_alloc(viommu.id(), uapi::kVeventqTypeArmSmmuv3, limits::kVeventqMaxDepth + 1),
          "IOMMU_VEVENTQ_ALLOC(depth 2^19 + 1) is EINVAL", EINVAL, {"VEVENTQ_MAX_DEPTH"});
  if (auto q = must(host.veventq_alloc(viommu.id(), uapi::kVeventqTypeArmSmmuv3, 64), "IOMMU_VEVENTQ_ALLOC")) {
    QueueObject queue(host, q->id, q->fd);
    std::array<std::byte, 64> buf{};
    auto empty = host.read_veventq(queue.fd(), buf);
    check(empty && *empty == 0, "read(vEVENTQ) of an empty queue is 0",
          empty ? fmt::format("{} bytes", *empty) : empty.error().to_string());
    auto tiny = host.read_veventq(queue.fd(), std::span(buf).first(7));
    check(!tiny && tiny.error().err == EINVAL, "read(vEVENTQ) with 7 bytes is EINVAL",
          tiny ? fmt::format("{} bytes [expected EINVAL]", *tiny) : tiny.error().to_string());
  }
  const auto bypass = vste(smmu::StreamConfig::bypass);
  if (auto id =
          must(host.hwpt_alloc(nested_request(*dev, viommu.id(), bypass)), "IOMMU_HWPT_ALLOC(nested, bypass vSTE)")) {
    HostObject nested(host, *id);
    must(host.attach(*dev, nested.id()), "VFIO_DEVICE_ATTACH_IOMMUFD_PT(nested)");
    must(host.attach(*dev, parent.id()), "VFIO_DEVICE_ATTACH_IOMMUFD_PT(back to the nest parent)");
  }

  const auto nh_all = smmu::Command{}.set(smmu::Command::Opcode, smmu::Opcode::TLBI_NH_ALL).to_bytes();
  const auto prefetch = smmu::Command{}
                            .set(smmu::Command::Opcode, smmu::Opcode::PREFETCH_CONFIG)
                            .set(smmu::Command::SID, static_cast<std::uint32_t>(kVsid))
                            .to_bytes();
  report_invalidate(host.hwpt_invalidate(invalidation(viommu.id(), nh_all, 1)),
                    "IOMMU_HWPT_INVALIDATE(TLBI_NH_ALL)", std::nullopt, 1);
  report_invalidate(host.hwpt_invalidate(invalidation(viommu.id(), nh_all, 0)),
                    "IOMMU_HWPT_INVALIDATE(no entries) is EINVAL on arm-smmu-v3", EINVAL, 0);
  report_invalidate(host.hwpt_invalidate(invalidation(viommu.id(), prefetch, 1)),
                    "IOMMU_HWPT_INVALIDATE(PREFETCH_CONFIG) is EIO", EIO, 0);
  // hw_pagetable.c caps entry_num at IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX (1 << 19): EINVAL before the target is
  // looked up; arm_vsmmu_cache_invalidate's one kmalloc of entry_num x 16 bytes fails above 4 MiB: ENOMEM.
  {
    std::vector<std::byte> many(std::size_t{limits::kInvalidateMaxEntries + 1} * 16);
    for (std::size_t i = 0; i < many.size(); i += 16) std::memcpy(many.data() + i, nh_all.data(), 16);
    report_invalidate(host.hwpt_invalidate(invalidation(viommu.id(), many, limits::kInvalidateMaxEntries + 1)),
                      "IOMMU_HWPT_INVALIDATE(2^19 + 1 entries) is EINVAL", EINVAL, 0);
    report_invalidate(host.hwpt_invalidate(invalidation(0xffff, many, limits::kInvalidateMaxEntries + 1)),
                      "IOMMU_HWPT_INVALIDATE(2^19 + 1 entries, no such target) is EINVAL", EINVAL, 0);
    const std::uint32_t over = limits::kInvalidateMaxAllocatableEntries + 1;
    report_invalidate(host.hwpt_invalidate(invalidation(viommu.id(), std::span(many).first(std::size_t{over} * 16), over)),
                      "IOMMU_HWPT_INVALIDATE(2^18 + 1 entries) is ENOMEM, entry_num back as given", ENOMEM, over);
  }

  must(host.detach(*dev), "VFIO_DEVICE_DETACH_IOMMUFD_PT");
  if (vdevice) must(vdevice->reset(), "IOMMU_DESTROY(vDEVICE)");
  must(viommu.reset(), "IOMMU_DESTROY(vIOMMU)");
  must(parent.reset(), "IOMMU_DESTROY(nest parent)");
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<bool> canwbs;
  std::string device = "/dev/vfio/devices/vfio0";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--iort" && i + 1 < argc) {
      const std::string_view v = argv[++i];
      if (v == "canwbs") canwbs = true;
      if (v == "no-canwbs") canwbs = false;
    } else if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else {
      canwbs.reset();
      break;
    }
  }
  if (!canwbs) {
    fmt::print(stderr, "usage: e2e_kernel_host --iort canwbs|no-canwbs [--device /dev/vfio/devices/vfioN]\n");
    return 2;
  }
  const int rc = run(*canwbs, device);
  fmt::print("e2e_kernel_host: {} checks ok, {} failed\n", passes, failures);
  return rc;
}
