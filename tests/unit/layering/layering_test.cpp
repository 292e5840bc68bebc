// The direction of the layers (docs/architecture.md), enforced on the sources: a folder's files may include
// only their own folder's headers and those of the folders below it. The rule an operator of the build sees:
// a change that makes a lower layer know a higher one (smmu/ including nesting/, nesting/ reaching past the host
// seam into host/kernel or host/sim, the product including testing/) fails here, naming the line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

const fs::path kRoot = VSMMU_SOURCE_DIR;

// Each source folder and the folders (besides itself) whose headers it may include.
const std::map<std::string, std::set<std::string>> kMayInclude = {
    {"base", {}},
    {"smmu", {"base"}},
    {"smmu/model", {"base", "smmu"}},
    {"smmu/driver", {"base", "smmu"}},
    {"invalidation", {"base", "smmu"}},
    {"acpi", {"base"}},
    {"host", {"base", "smmu"}},
    {"host/kernel", {"base", "smmu", "host"}},
    {"host/sim", {"base", "smmu", "smmu/model", "smmu/driver", "host"}},
    {"nesting", {"base", "smmu", "invalidation", "host"}},
    {"service", {"base", "smmu", "invalidation", "host", "host/kernel", "host/sim", "nesting"}},
    {"service/client", {"base", "smmu", "host", "nesting", "service"}},
    {"testing", {"base", "smmu", "smmu/model", "smmu/driver", "invalidation", "host", "nesting"}},
    {"tools",
     {"base", "smmu", "smmu/model", "smmu/driver", "invalidation", "acpi", "host", "host/kernel", "host/sim", "nesting",
      "service", "service/client", "testing"}},
};

bool is_source(const fs::path& p) { return p.extension() == ".hpp" || p.extension() == ".cpp"; }

TEST(Layering, EveryFolderIncludesOnlyItselfAndTheLayersBelow) {
  const std::regex include(R"re(^\s*#\s*include\s+"([^"]+)")re");
  std::vector<std::string> violations;
  for (const auto& [folder, allowed] : kMayInclude) {
    ASSERT_TRUE(fs::is_directory(kRoot / folder)) << folder;
    for (const auto& entry : fs::directory_iterator(kRoot / folder)) {
      if (!entry.is_regular_file() || !is_source(entry.path())) continue;
      std::ifstream in(entry.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        std::smatch m;
        if (!std::regex_search(line, m, include)) continue;
        const std::string target = fs::path(m[1].str()).parent_path().string();
        if (target == folder || allowed.contains(target)) continue;
        violations.push_back(folder + "/" + entry.path().filename().string() + ":" + std::to_string(n) + ": includes \"" +
                             m[1].str() + "\": " + folder + "/ may include only " + folder + "/" +
                             [&] {
                               std::string s;
                               for (const auto& a : allowed) s += ", " + a + "/";
                               return s;
                             }());
      }
    }
  }
  for (const auto& v : violations) ADD_FAILURE() << v;
}

// A new folder of product code gets its place in the layers (kMayInclude and docs/architecture.md) before
// anything includes it.
TEST(Layering, EveryProductFolderHasARule) {
  const std::set<std::string> not_product = {"tests", "bench", "docs", "scripts", "build", ".git", ".ci"};
  for (const auto& entry : fs::recursive_directory_iterator(kRoot)) {
    if (!entry.is_directory()) continue;
    const std::string rel = fs::relative(entry.path(), kRoot).string();
    const std::string top = rel.substr(0, rel.find('/'));
    if (not_product.contains(top) || top.starts_with(".")) continue;
    bool has_sources = false;
    for (const auto& f : fs::directory_iterator(entry.path())) has_sources |= f.is_regular_file() && is_source(f.path());
    if (has_sources) {
      EXPECT_TRUE(kMayInclude.contains(rel)) << rel << "/ holds sources but has no layering rule";
    }
  }
}

}  // namespace
