// HANAMI_CHECK(cond, parts...): TORCH_CHECK with a message built without iostreams.
//
// c10's message builder formats numbers through a std::ostringstream compiled into this
// extension. On a GPU machine with its own torch 2.11 build, a TORCH_CHECK whose message held a
// number ended the process with a segmentation fault, while plain-text messages raised; the same
// checks through HANAMI_CHECK raised RuntimeError there, on the CPU and on CUDA. Building the text
// with std::to_string and string appends avoids the stream and that crash on every build.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <string>
#include <type_traits>

namespace hanami {

inline void append_text(std::string& out, const char* part) { out += part; }
inline void append_text(std::string& out, const std::string& part) { out += part; }
inline void append_text(std::string& out, char part) { out += part; }
inline void append_text(std::string& out, const c10::Device& device) { out += device.str(); }
inline void append_text(std::string& out, c10::ScalarType type) { out += c10::toString(type); }
inline void append_text(std::string& out, c10::IntArrayRef sizes) {
  out += '[';
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(sizes[i]);
  }
  out += ']';
}
template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, char> &&
                                                  !std::is_same_v<T, bool>>>
inline void append_text(std::string& out, T number) {
  out += std::to_string(number);
}

template <typename... Parts>
std::string text(const Parts&... parts) {
  std::string out;
  (append_text(out, parts), ...);
  return out;
}

}  // namespace hanami

#define HANAMI_CHECK(cond, ...)                                       \
  do {                                                                \
    if (C10_UNLIKELY(!(cond))) {                                      \
      const std::string hanami_check_text_ = ::hanami::text(__VA_ARGS__); \
      TORCH_CHECK(false, hanami_check_text_.c_str());                 \
    }                                                                 \
  } while (false)
