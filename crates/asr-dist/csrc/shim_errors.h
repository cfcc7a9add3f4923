// Error handling shared by the two C++ shims of asr-dist (c10d_shim.cpp, linked into
// every binary, and nccl_shim.cpp, the NCCL side library): no C++ exception crosses
// the C boundary. A failing call returns -1 (or null) and a malloc'd message that the
// Rust caller frees with free().
#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace asr_dist_shim {

// Hands `message` to the caller through `err` (if given) as a malloc'd C string.
inline void set_error(char** err, const std::string& message) {
  if (err == nullptr) return;
  *err = static_cast<char*>(std::malloc(message.size() + 1));
  if (*err != nullptr) std::memcpy(*err, message.c_str(), message.size() + 1);
}

// Runs `body`, turning any exception into -1 and a message.
template <typename F>
int guarded(char** err, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    // c10's what() carries a C++ backtrace: the message alone is what a user can act on.
    set_error(err, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_error(err, e.what());
  } catch (...) {
    set_error(err, "unknown C++ exception");
  }
  return -1;
}

}  // namespace asr_dist_shim
