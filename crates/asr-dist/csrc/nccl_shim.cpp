// libasr_dist_nccl.so: constructs c10d::ProcessGroupNCCL for asr-dist.
//
// Why a separate library: ProcessGroupNCCL lives in libtorch_cuda.so, which the CPU
// layout of libtorch (the one every binary links) does not have. The binaries stay CPU
// builds; on a CUDA machine asr-dist dlopen()s this library (after asr-model loaded
// libtorch_cuda.so), takes `asr_dist_nccl_new` and hands it to the Gloo shim
// (csrc/c10d_shim.cpp, `asr_dist_attach_cuda_backend`), which keeps the returned
// `c10d::Backend` beside Gloo and sends CUDA tensors to it. Every collective is then the
// same virtual call on `c10d::Backend` as for Gloo: the vtable is libtorch_cuda's own.
//
// Built by tools/build-nccl-shim.sh (which tools/install-libtorch.sh --cuda runs) against
// the wheel's headers, the CUDA runtime headers and NCCL 2.28.9's nccl.h (the version the
// torch 2.11.0 wheel pins: `ProcessGroupNCCL::Options` holds an `ncclConfig_t`, and
// NCCLUtils.hpp turns features on from NCCL_VERSION_CODE, so both layouts depend on it),
// linked to libtorch_cuda.so, installed into LIBTORCH/lib.
//
// ABI: the only inline code generated here that depends on torch's private layouts is
// `make_intrusive<Options>` and `make_intrusive<ProcessGroupNCCL>` (operator new with
// our sizeof, then the exported constructors) and the Options members we set. Checked for
// torch 2.11.0 + NCCL 2.28.9 on x86_64 (gcc, -std=c++17): sizeof(ProcessGroupNCCL) is
// 1112 and sizeof(Options) 248, and libtorch_cuda.so itself allocates 0x458 (1112) and
// 0xf8 (248) bytes before calling those constructors in ProcessGroupNCCL::merge and
// ::split (`objdump -d --start-address=<merge> ...`, addresses from `nm -D`). The asserts
// below keep that check: when torch or NCCL is upgraded and they fire, repeat it.
//
// No C++ exception crosses the C boundary (shim_errors.h): errors come back as null and
// a malloc'd message (freed by the caller with free()).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <c10/cuda/CUDAFunctions.h>

#include "shim_errors.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#if NCCL_VERSION_CODE != NCCL_VERSION(2, 28, 9)
#error "build against NCCL 2.28.9's nccl.h, the version the torch 2.11.0 wheel pins"
#endif

#if defined(__x86_64__) && defined(__GLIBCXX__)
static_assert(sizeof(c10d::ProcessGroupNCCL) == 1112,
              "ProcessGroupNCCL's size differs from libtorch_cuda's: see the ABI note");
static_assert(sizeof(c10d::ProcessGroupNCCL::Options) == 248,
              "ProcessGroupNCCL::Options's size differs from libtorch_cuda's: see the ABI note");
#endif

extern "C" {

// The C interface's version: asr-dist refuses a library built from another one.
int asr_dist_nccl_abi_version(void) { return 1; }

// NCCL's version as NCCL_VERSION_CODE (22809 for 2.28.9), the headers this was built with.
int asr_dist_nccl_header_version(void) { return NCCL_VERSION_CODE; }

// A ProcessGroupNCCL of `world_size` ranks over `store` (a borrowed `c10d::Store*`, the
// job's TCPStore; its keys go under "asr-dist/nccl/"), for CUDA tensors on device
// `device_index` (made this process's current CUDA device). `timeout_ms` is the
// collectives' timeout. Returns a `c10d::Backend*` holding one reference, which the
// caller owns (intrusive_ptr::reclaim), or null and a message in `err`.
//
// TORCH_NCCL_BLOCKING_WAIT defaults to 1 here (unless the user set it): a collective's
// wait() then blocks until the result is there and throws at the timeout, so a dead or
// stalled peer surfaces as an error on this rank (named by asr-dist's roll call) and the
// time spent shows in comm_s, as with Gloo.
void* asr_dist_nccl_new(void* store, int rank, int world_size, int device_index,
                        int64_t timeout_ms, char** err) {
  c10d::Backend* made = nullptr;
  asr_dist_shim::guarded(err, [&] {
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
    auto base = c10::intrusive_ptr<c10d::Store>::unsafe_reclaim_from_nonowning(
        static_cast<c10d::Store*>(store));
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("asr-dist/nccl/", base);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto backend =
        c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, world_size, options);
    // Rank r works on cuda:LOCAL_RANK, as torch.cuda.set_device(local_rank) does in a
    // torch DDP script: work without an explicit device (CUDA contexts, handles) goes
    // there instead of every rank's landing on cuda:0. NCCL makes its communicator on
    // the device of the first tensor it is given.
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
    c10::intrusive_ptr<c10d::Backend> as_backend = backend;
    made = as_backend.release();
  });
  return made;
}

}  // extern "C"
