// One client connection: its requests read in order, checked (service/requests.hpp) and executed - the
// connection's own (HELLO, regions, CREATE, SIM_DMA, STATS) on its strand, a vSMMU's on that vSMMU's strand -
// its replies sent in the order they are ready, with backpressure: while max_pending requests are in flight
// or replies unsent, the daemon stops reading this client (and only this one). When the client goes (close,
// SIGKILL, a broken socket) or the daemon stops, everything it made is released.
#pragma once

#include <utility>  // before Boost.Asio

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/generic/seq_packet_protocol.hpp>
#include <boost/asio/strand.hpp>

#include "host/handles.hpp"
#include "nesting/notice.hpp"
#include "service/client_memory.hpp"
#include "service/requests.hpp"

namespace vsmmu::service {

class Server;
class ServedVsmmu;

class Session : public std::enable_shared_from_this<Session> {
 public:
  using Socket = boost::asio::generic::seq_packet_protocol::socket;
  Session(Server& server, Socket socket, std::uint64_t id, std::string peer);
  ~Session();

  void start();
  // Closes the connection and releases everything the client made (from any thread).
  void close(std::string why);
  std::string_view label() const { return label_; }

 private:
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
  void read();
  void on_readable();
  void handle(std::span<const std::byte> packet, std::vector<host::UniqueFd> fds);
  void execute(Request& request, std::vector<host::UniqueFd>& fds);
  void on_vsmmu(Request& request, std::vector<host::UniqueFd>& fds);
  void dirty_log(Request& request, std::vector<host::UniqueFd>& fds);
  Result<void> guest_memory();
  void refuse(const Header& request, const Refusal& refusal, std::uint16_t extra_flags = 0);
  void refuse(const Header& request, std::string field, const Error& error, std::uint16_t extra_flags = 0);
  void reply(std::vector<std::byte> packet);
  // A message the client did not ask for (REPLY|ASYNC, tag 0, on `vsmmu`): MSI, NOTICE. On the strand. Dropped
  // when `max_queued` packets wait unsent (the client is not reading): counted in `dropped`, which the next one
  // sent carries (T::dropped); the first drop is logged.
  template <class T>
  void unsolicited(Op op, std::uint32_t vsmmu, T body, std::uint32_t& dropped, std::size_t max_queued,
                   std::initializer_list<std::span<const std::byte>> tail = {});
  void send_msi(std::uint32_t vsmmu, std::uint64_t address, std::uint32_t data);
  void send_notice(std::uint32_t vsmmu, const nesting::Notice& notice);
  void flush();
  void request_done();
  bool can_read() const;
  void close_on_strand(const std::string& why);

  Server& server_;
  Strand strand_;
  Socket socket_;
  const std::uint64_t id_;
  const std::string label_;
  std::vector<std::byte> buffer_;
  bool hello_ = false;
  std::uint64_t features_ = 0;                   // granted in HELLO's reply
  bool reading_ = false;
  bool writing_ = false;
  bool closed_ = false;
  std::uint32_t in_flight_ = 0;
  std::deque<std::vector<std::byte>> out_;
  std::shared_ptr<host::Host> host_;             // the simulated host (shared) or this client's kernel host
  std::shared_ptr<ClientMemory> memory_;
  std::map<std::uint32_t, std::shared_ptr<ServedVsmmu>> vsmmus_;
  std::uint32_t next_handle_ = 1;
  std::uint32_t msis_dropped_ = 0;               // since the last MSI sent (MsiMessage::dropped)
  std::uint32_t notices_dropped_ = 0;            // since the last NOTICE sent (NoticeMessage::dropped)
  std::size_t devices_ = 0;
};

}  // namespace vsmmu::service
