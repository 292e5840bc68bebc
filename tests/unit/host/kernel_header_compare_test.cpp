// The project's iommufd / VFIO definitions against a real Linux 7.x uAPI header (include/uapi/linux/iommufd.h and
// vfio.h as Debian's linux-libc-dev ships them): kernel_header_check.cpp, which static_asserts every struct size,
// field offset and size, ioctl number and constant, must compile against it. The header tree comes from
// scripts/fetch-kernel-headers (scripts/test runs it before ctest); without one, the test is skipped with the
// reason the fetch recorded (network, mirror, ...).
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct HeaderTree {
  fs::path root;       // <cache>/current, holding usr/include/linux/iommufd.h
  std::string source;  // first line of SOURCE: "linux-libc-dev <version>"
};

// The cache directories scripts/fetch-kernel-headers may have used: the one VSMMU_KERNEL_HEADERS_DIR names, else
// its defaults in its order of preference.
std::vector<fs::path> cache_dirs() {
  if (const char* d = std::getenv("VSMMU_KERNEL_HEADERS_DIR"); d && *d) return {fs::path(d)};
  std::vector<fs::path> dirs;
  dirs.emplace_back("/var/cache/vsmmu/kernel-headers");
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    dirs.push_back(fs::path(x) / "vsmmu/kernel-headers");
  else if (const char* h = std::getenv("HOME"); h && *h)
    dirs.push_back(fs::path(h) / ".cache/vsmmu/kernel-headers");
  return dirs;
}

std::string first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// The header tree, or the reason there is none.
std::optional<HeaderTree> find_headers(std::string& why_not) {
  std::string searched;
  for (const auto& dir : cache_dirs()) {
    if (fs::exists(dir / "current/usr/include/linux/iommufd.h"))
      return HeaderTree{dir / "current", first_line(dir / "current/SOURCE")};
    if (why_not.empty() && fs::exists(dir / "unavailable"))
      why_not = "scripts/fetch-kernel-headers could not fetch a Linux 7.x header: " + first_line(dir / "unavailable");
    searched += (searched.empty() ? "" : ", ") + dir.string();
  }
  if (why_not.empty())
    why_not = "no Linux 7.x uAPI header tree in " + searched + ": run scripts/fetch-kernel-headers (scripts/test does)";
  return std::nullopt;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Compile {
  int status = -1;
  std::string output;
};

// Syntax-checks kernel_header_check.cpp with the project's compiler; extra include dirs come first.
Compile compile_checker(const HeaderTree& tree, const std::vector<fs::path>& first = {}) {
  std::string cmd = quote(VSMMU_CXX_COMPILER) + " -std=c++23 -fsyntax-only -Wall -Wextra -Werror";
  for (const auto& d : first) cmd += " -isystem " + quote(d.string());
  const fs::path inc = tree.root / "usr/include";
  cmd += " -isystem " + quote(inc.string());
  const std::string multiarch = VSMMU_MULTIARCH;
  if (!multiarch.empty()) cmd += " -isystem " + quote((inc / multiarch).string());
  cmd += " -I " + quote(VSMMU_SOURCE_DIR) + " " + quote(VSMMU_HEADER_CHECK_SOURCE) + " 2>&1";
  Compile c;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return c;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) c.output.append(buf, n);
  const int st = ::pclose(p);
  c.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return c;
}

TEST(KernelHeaderCompare, ProjectDefinitionsMatchTheKernelHeader) {
  std::string why_not;
  auto tree = find_headers(why_not);
  if (!tree) GTEST_SKIP() << why_not;
  std::cout << "comparing with " << tree->source << " (" << tree->root.string() << ")\n";
  // The nesting uAPI (vIOMMU, vEVENTQ, HW_QUEUE) is complete only from 7.x on.
  ASSERT_TRUE(tree->source.starts_with("linux-libc-dev ")) << tree->source;
  const int major = std::atoi(tree->source.c_str() + std::string_view("linux-libc-dev ").size());
  EXPECT_GE(major, 7) << tree->source;
  const Compile c = compile_checker(*tree);
  EXPECT_EQ(c.status, 0) << "the project's ABI definitions differ from " << tree->source << ":\n" << c.output;
}

TEST(KernelHeaderCompare, TheCheckCatchesAFieldTheKernelAdded) {
  // Drift as a newer kernel would bring it: one more u32 in struct iommu_hwpt_alloc after out_hwpt_id.
  std::string why_not;
  auto tree = find_headers(why_not);
  if (!tree) GTEST_SKIP() << why_not;
  std::ifstream in(tree->root / "usr/include/linux/iommufd.h");
  std::stringstream text;
  text << in.rdbuf();
  std::string header = text.str();
  const std::string anchor = "\t__u32 out_hwpt_id;\n";
  const auto at = header.find(anchor);
  ASSERT_NE(at, std::string::npos) << "iommufd.h no longer has struct iommu_hwpt_alloc's out_hwpt_id line";
  header.insert(at + anchor.size(), "\t__u32 vsmmu_injected_drift;\n");

  const fs::path dir = fs::temp_directory_path() / ("vsmmu-drift-" + std::to_string(::getpid()));
  fs::create_directories(dir / "linux");
  std::ofstream(dir / "linux/iommufd.h") << header;
  const Compile c = compile_checker(*tree, {dir});
  fs::remove_all(dir);
  EXPECT_NE(c.status, 0) << "an added field went unnoticed:\n" << c.output;
  EXPECT_NE(c.output.find("iommu_hwpt_alloc"), std::string::npos) << c.output;
}

}  // namespace
