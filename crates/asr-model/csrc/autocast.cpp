// C wrappers over ATen's per-device autocast state (ATen/autocast_mode.h), used by
// asr_model::precision. tch 0.24 only switches CUDA autocast on and off and keeps its
// default dtype (float16); bf16 mixed precision on CUDA and CPU needs the dtype setter.
// No C++ exception may cross into Rust: every wrapper catches and reports -1.
#include <ATen/autocast_mode.h>
#include <cstdint>

namespace {
c10::DeviceType device_type_of(int8_t device_type) {
  return static_cast<c10::DeviceType>(device_type);
}
}  // namespace

extern "C" {

int asr_autocast_is_enabled(int8_t device_type) {
  try {
    return at::autocast::is_autocast_enabled(device_type_of(device_type)) ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

int asr_autocast_set_enabled(int8_t device_type, int enabled) {
  try {
    at::autocast::set_autocast_enabled(device_type_of(device_type), enabled != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

int8_t asr_autocast_get_dtype(int8_t device_type) {
  try {
    return static_cast<int8_t>(at::autocast::get_autocast_dtype(device_type_of(device_type)));
  } catch (...) {
    return -1;
  }
}

int asr_autocast_set_dtype(int8_t device_type, int8_t scalar_type) {
  try {
    at::autocast::set_autocast_dtype(device_type_of(device_type),
                                     static_cast<c10::ScalarType>(scalar_type));
    return 0;
  } catch (...) {
    return -1;
  }
}

int asr_autocast_increment_nesting(void) {
  try {
    return at::autocast::increment_nesting();
  } catch (...) {
    return -1;
  }
}

int asr_autocast_decrement_nesting(void) {
  try {
    return at::autocast::decrement_nesting();
  } catch (...) {
    return -1;
  }
}

int asr_autocast_clear_cache(void) {
  try {
    at::autocast::clear_cache();
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
