// Assertions shared by the C++ tests: REQUIRE for a condition, and THROWS
// (for tests of gopro.hpp) for a call that must throw gopro::Error with a
// given status.
#ifndef GOPRO_TEST_CHECK_HPP
#define GOPRO_TEST_CHECK_HPP

#include <cstdio>
#include <cstdlib>
#include <string>

#define REQUIRE(cond)                                                                  \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

// `expr` must throw gopro::Error with `want`; gives its what().
#define THROWS(expr, want)                                                             \
  [&]() -> std::string {                                                               \
    try {                                                                              \
      (void)(expr);                                                                    \
    } catch (const gopro::Error &e) {                                                  \
      if (e.status() != (want)) {                                                      \
        std::fprintf(stderr, "%s:%d: %s threw status %d (%s), wanted %s\n", __FILE__,  \
                     __LINE__, #expr, static_cast<int>(e.status()), e.what(), #want);  \
        std::exit(1);                                                                  \
      }                                                                                \
      return e.what();                                                                 \
    }                                                                                  \
    std::fprintf(stderr, "%s:%d: %s did not throw %s\n", __FILE__, __LINE__, #expr,    \
                 #want);                                                               \
    std::exit(1);                                                                      \
  }()

#endif
