// Compiled by the ctest base_result_is_nodiscard, which passes only when the compiler refuses this file for
// the dropped Result below: a failure nobody reads must not compile silently (base/error.hpp).
#include "base/error.hpp"

vsmmu::Result<void> might_fail();

void caller() { might_fail(); }
