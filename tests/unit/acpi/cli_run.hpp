// What the CLI tests (acpi_cli_test: cli_test.cpp, cli_dt_test.cpp, cli_patch_test.cpp) share: the vsmmu binary
// under test (VSMMU_BIN), the test data directory, and "the output says this".
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "fixtures.hpp"

namespace vsmmu::acpi::test {

inline std::string data(const std::string& name) { return std::string(VSMMU_TEST_DATA) + "/" + name; }

// Runs `vsmmu ARGS` (ARGS quoted by the caller), stdout and stderr together.
inline Run vsmmu(const std::string& args) { return run(std::string("'") + VSMMU_BIN + "' " + args); }

inline void expect_in(const std::string& out, const std::string& what) {
  EXPECT_NE(out.find(what), std::string::npos) << "missing '" << what << "' in:\n" << out;
}

}  // namespace vsmmu::acpi::test
