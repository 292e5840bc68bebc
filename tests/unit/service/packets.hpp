// Requests as a VMM builds them (protocol.hpp's build()), decoded as the daemon decodes them, and the check
// that a refusal is the one docs/protocol.md promises: errno, op, field, and a reason that says why.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "service/protocol.hpp"
#include "service/requests.hpp"

namespace vsmmu::service::test {

inline constexpr std::uint32_t kMaxMessage = 4096;  // the tests' HelloReply::max_message
inline constexpr std::uint64_t kTag = 0x7a6;
using Decoded = std::expected<Request, Refusal>;

inline Header request(Op op, std::uint32_t vsmmu = 0, std::uint16_t flags = 0) {
  Header h;
  h.op = static_cast<std::uint16_t>(op);
  h.flags = flags;
  h.tag = kTag;
  h.vsmmu = vsmmu;
  return h;
}

inline Decoded decode(std::span<const std::byte> packet, std::size_t fds = 0, HostKind host = HostKind::sim,
                      std::uint32_t max_message = kMaxMessage) {
  return decode_request(packet, fds, DecodeContext{host, max_message});
}
inline Decoded decode_kernel(std::span<const std::byte> packet, std::size_t fds) {
  return decode(packet, fds, HostKind::kernel);
}

// A packet of the header and raw body bytes (header.size filled in).
inline std::vector<std::byte> raw(Header h, std::span<const std::byte> body) {
  std::vector<std::byte> out(sizeof(Header) + body.size());
  h.size = static_cast<std::uint32_t>(out.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!body.empty()) std::memcpy(out.data() + sizeof h, body.data(), body.size());
  return out;
}

template <class T>
std::span<const std::byte> bytes_of_struct(const T& v) {
  return std::as_bytes(std::span(&v, 1));
}

inline ::testing::AssertionResult refused(const Decoded& r, int err, std::string_view field,
                                          std::string_view reason_part = "") {
  if (r) return ::testing::AssertionFailure() << "accepted, expected a refusal of " << field;
  const Refusal& f = r.error();
  if (f.err != err || f.field != field ||
      (!reason_part.empty() && f.reason.find(reason_part) == std::string::npos))
    return ::testing::AssertionFailure() << "refused with errno " << f.err << " (" << f.to_string()
                                         << "), expected errno " << err << " on " << field
                                         << (reason_part.empty() ? "" : " saying ") << reason_part;
  if (f.reason.empty()) return ::testing::AssertionFailure() << "no reason given: " << f.to_string();
  return ::testing::AssertionSuccess();
}

template <class T>
const T& args(const Decoded& r) {
  return std::get<T>(r->args);
}

// One valid request of each op (the sim host unless said).
inline std::vector<std::byte> hello() { return build(request(Op::hello), HelloRequest{}); }

inline CreateRequest create_body(std::string_view name, std::string_view device) {
  CreateRequest c;
  c.vsid = 0x10;
  c.name_len = static_cast<std::uint32_t>(name.size());
  c.device_name_len = static_cast<std::uint32_t>(device.size());
  return c;
}
inline std::vector<std::byte> create(std::string_view name = "vsmmu0", std::string_view device = "nic0") {
  return build(request(Op::create_vsmmu), create_body(name, device), {bytes_of(name), bytes_of(device)});
}
inline std::vector<std::byte> create_with(const CreateRequest& c, std::string_view name, std::string_view device) {
  return build(request(Op::create_vsmmu), c, {bytes_of(name), bytes_of(device)});
}

inline AttachRequest attach_body(std::uint32_t vsid, std::string_view device) {
  AttachRequest a;
  a.vsid = vsid;
  a.device_name_len = static_cast<std::uint32_t>(device.size());
  return a;
}
inline std::vector<std::byte> attach(std::string_view device = "nic1", std::uint32_t vsmmu = 1) {
  return build(request(Op::attach_device, vsmmu), attach_body(0x18, device), {bytes_of(device)});
}

inline AddRegionRequest region_body(std::uint64_t gpa, std::uint64_t length, std::uint64_t fd_offset = 0) {
  AddRegionRequest r;
  r.gpa = gpa;
  r.length = length;
  r.fd_offset = fd_offset;
  return r;
}
inline std::vector<std::byte> add_region(std::uint64_t gpa = 0x40000000, std::uint64_t length = 0x200000,
                                         std::uint64_t fd_offset = 0) {
  return build(request(Op::add_region), region_body(gpa, length, fd_offset));
}

inline std::vector<std::byte> mmio_read(std::uint64_t offset, std::uint32_t width, std::uint32_t vsmmu = 1) {
  MmioReadRequest m;
  m.width = width;
  m.offset = offset;
  return build(request(Op::mmio_read, vsmmu), m);
}
inline std::vector<std::byte> mmio_write(std::uint64_t offset, std::uint32_t width, std::uint64_t value,
                                         std::uint16_t flags = 0, std::uint32_t vsmmu = 1) {
  MmioWriteRequest m;
  m.width = width;
  m.offset = offset;
  m.value = value;
  return build(request(Op::mmio_write, vsmmu, flags), m);
}

inline std::vector<std::byte> set_irq(std::uint32_t line, std::uint32_t vsmmu = 1) {
  SetIrqRequest s;
  s.line = line;
  return build(request(Op::set_irq, vsmmu), s);
}

inline SimDmaRequest dma_body(DmaDirection dir, std::uint64_t iova, std::uint32_t length, std::string_view engine) {
  SimDmaRequest d;
  d.direction = static_cast<std::uint32_t>(dir);
  d.iova = iova;
  d.length = length;
  d.engine_len = static_cast<std::uint32_t>(engine.size());
  return d;
}
inline std::vector<std::byte> dma_write(std::string_view engine, std::uint64_t iova, std::string_view data) {
  return build(request(Op::sim_dma), dma_body(DmaDirection::write, iova, static_cast<std::uint32_t>(data.size()), engine),
               {bytes_of(engine), bytes_of(data)});
}
inline std::vector<std::byte> dma_read(std::string_view engine, std::uint64_t iova, std::uint32_t length) {
  return build(request(Op::sim_dma), dma_body(DmaDirection::read, iova, length, engine), {bytes_of(engine)});
}

}  // namespace vsmmu::service::test
