// What tests need to know about the sanitizer they are built with.
#ifndef LOGSTAR_TESTS_SANITIZERS_H_
#define LOGSTAR_TESTS_SANITIZERS_H_

#include "gtest/gtest.h"

// Tests that measure resident memory skip under AddressSanitizer: its shadow
// memory and quarantine add to the resident set, so the figures only mean
// something in the Release build.
#if defined(__SANITIZE_ADDRESS__)
#define LOGSTAR_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOGSTAR_UNDER_ASAN 1
#endif
#endif

#ifdef LOGSTAR_UNDER_ASAN
#define LOGSTAR_SKIP_UNDER_ASAN() \
  GTEST_SKIP() << "resident memory is not meaningful under AddressSanitizer"
#else
#define LOGSTAR_SKIP_UNDER_ASAN() (void)0
#endif

#endif  // LOGSTAR_TESTS_SANITIZERS_H_
