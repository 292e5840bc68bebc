#include "acpi/files.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

namespace vsmmu::acpi {
namespace {

// Closes a descriptor on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::vector<std::uint8_t>> read_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return fail(errno, "read", "cannot open {}: {}", path, std::strerror(errno));
  std::vector<std::uint8_t> out;
  // sysfs table files report size 0, so read until EOF instead of trusting st_size.
  std::uint8_t buf[65536];
  for (;;) {
    const ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "read", "cannot read {}: {}", path, std::strerror(errno));
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

Result<void> write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (f.fd < 0) return fail(errno, "write", "cannot create {}: {}", path, std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(f.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno, "write", "cannot write {}: {}", path, std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) return fail(errno, "write", "cannot finish writing {}: {}", path, std::strerror(errno));
  return {};
}

}  // namespace vsmmu::acpi
