// C wrappers over PyTorch's c10d (TCPStore, PrefixStore, ProcessGroupGloo), used by
// asr_dist::group. On CUDA, a ProcessGroupNCCL made by the separate libasr_dist_nccl.so
// (nccl_shim.cpp, dlopen'd by asr_dist) is attached beside Gloo and takes CUDA tensors,
// as torch's "cpu:gloo,cuda:nccl" does. The Rust side owns the handle and the tensors (tch's `at::Tensor*`).
//
// No C++ exception may cross into Rust: every wrapper catches, returns -1 (or null) and
// hands the message back through `err` (malloc'd; freed by asr_dist_free_string).
//
// ABI note (read before adding a call). The Gloo headers we compile against are Debian's
// 2022 snapshot (tools/install-dist-headers.sh); the torch 2.11 libtorch_cpu.so was built
// with a late-2025 gloo whose `gloo::Context` has no virtual destructor any more and whose
// `gloo::rendezvous::Store` gained a base class and virtuals. So this file must only reach
// ProcessGroupGloo through things whose ABI does not depend on Gloo's own layouts:
//   - `ProcessGroupGloo::Options::create` (inline; the struct holds Backend::Options, a
//     vector of shared_ptr<gloo::transport::Device> and an int) and its exported ctor;
//   - the exported static `createDeviceForInterface` / `createDefaultDevice` (they return
//     a shared_ptr, whose layout and type-erased deleter do not depend on the pointee);
//   - the exported constructor (the object's members are Gloo types only behind
//     shared_ptr/unique_ptr, so sizeof comes from torch's and the standard headers);
//   - the virtual collectives of `c10d::Backend` and `c10d::Work::wait`.
// Never call ProcessGroupGloo's inline members that touch Gloo objects (`setTimeout`,
// `_getStore`, `GlooStore`, `AsyncWork`): their code would be generated from the old
// headers.
//
// Checked for torch 2.11.0 on x86_64: compiled against Debian's 5b14351 headers and against
// upstream gloo cc44198 (2025-05), sizeof(ProcessGroupGloo) is 488 and sizeof(Options) 176
// with identical member offsets, and libtorch_cpu.so itself allocates 0x1e8 (488) bytes in
// ProcessGroupGloo::merge and 0xb0 (176) in Options::create_default (objdump). The asserts
// below keep that check: when torch is upgraded and they fire, repeat it.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "shim_errors.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GLIBCXX__)
static_assert(sizeof(c10d::ProcessGroupGloo) == 488,
              "ProcessGroupGloo's size changed: re-check the ABI note above");
static_assert(sizeof(c10d::ProcessGroupGloo::Options) == 176,
              "ProcessGroupGloo::Options's size changed: re-check the ABI note above");
#endif

struct AsrDistGroup {
  c10::intrusive_ptr<c10d::Store> tcp;    // the job's TCPStore (roll calls)
  c10::intrusive_ptr<c10d::Store> store;  // its "asr-dist/gloo/" prefix (Gloo's keys)
  c10::intrusive_ptr<c10d::Backend> backend;  // Gloo: CPU tensors, barrier
  // ProcessGroupNCCL, made by libasr_dist_nccl.so (csrc/nccl_shim.cpp) when attached:
  // CUDA tensors. Reached only through c10d::Backend's virtuals, whose code is
  // libtorch_cuda's, so this file needs neither its headers nor its library.
  c10::intrusive_ptr<c10d::Backend> cuda;
  int rank;
  int world_size;
  int64_t timeout_ms;
  bool serves_store;  // this process hosts the TCPStore (rank 0 unless torchrun's agent)
};

// `asr_dist_nccl_new` of libasr_dist_nccl.so: (borrowed c10d::Store*, rank, world size,
// CUDA device index, timeout in ms, err) -> an owned c10d::Backend*, or null.
typedef void* (*AsrDistNcclNew)(void*, int, int, int, int64_t, char**);

namespace {

using asr_dist_shim::guarded;
using asr_dist_shim::set_error;

// GLOO_SOCKET_IFNAME as torch reads it: a comma-separated list of interfaces, one Gloo
// device each; unset or empty: the address the host name resolves to (else loopback).
std::vector<std::shared_ptr<::gloo::transport::Device>> make_devices(const char* ifnames) {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (ifnames != nullptr && ifnames[0] != '\0') {
    std::stringstream list(ifnames);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (!name.empty()) devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    }
  }
  if (devices.empty()) devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return devices;
}

c10d::Backend& backend_of(AsrDistGroup* group) {
  if (!group->backend) {
    throw std::runtime_error("the process group was closed after an earlier failure");
  }
  return *group->backend;
}

// The backend for `tensor`: NCCL for CUDA tensors (once attached), Gloo for the rest.
c10d::Backend& backend_for(AsrDistGroup* group, const at::Tensor& tensor) {
  if (!tensor.is_cuda()) return backend_of(group);
  if (!group->backend) {
    throw std::runtime_error("the process group was closed after an earlier failure");
  }
  if (!group->cuda) {
    throw std::runtime_error("a CUDA tensor, but no NCCL backend is attached to the group");
  }
  return *group->cuda;
}

void wait_work(const c10::intrusive_ptr<c10d::Work>& work) {
  // The timeout is the process group's (Options::timeout, given to every Gloo context).
  work->wait();
}

}  // namespace

extern "C" {

void asr_dist_free_string(char* s) { std::free(s); }

// Rendezvous through a TCPStore at host:port (served by this process when `serve` is
// non-zero, which waits for the others; rank 0 unless torchrun's agent serves it), then
// connects the Gloo process group. `timeout_ms` bounds both the rendezvous and every
// collective. `ifnames` may be null.
AsrDistGroup* asr_dist_gloo_new(const char* host, uint16_t port, int rank, int world_size,
                                int serve, int64_t timeout_ms, const char* ifnames,
                                char** err) {
  AsrDistGroup* group = nullptr;
  guarded(err, [&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions store_options;
    store_options.port = port;
    store_options.isServer = serve != 0;
    store_options.numWorkers = static_cast<std::size_t>(world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), store_options);
    auto store = c10::make_intrusive<c10d::PrefixStore>("asr-dist/gloo/", tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices = make_devices(ifnames);
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    group = new AsrDistGroup{tcp, store, backend, {}, rank, world_size, timeout_ms, serve != 0};
  });
  return group;
}

// Attaches NCCL for CUDA tensors: `make` is libasr_dist_nccl.so's asr_dist_nccl_new,
// given the job's TCPStore (it prefixes its own keys) and this rank's CUDA device.
int asr_dist_attach_nccl(AsrDistGroup* group, AsrDistNcclNew make, int device_index,
                         char** err) {
  return guarded(err, [&] {
    char* made_err = nullptr;
    void* made = make(group->tcp.get(), group->rank, group->world_size, device_index,
                      group->timeout_ms, &made_err);
    if (made == nullptr) {
      std::string message = made_err != nullptr ? made_err : "no message from c10d";
      std::free(made_err);
      throw std::runtime_error(message);
    }
    group->cuda = c10::intrusive_ptr<c10d::Backend>::reclaim(static_cast<c10d::Backend*>(made));
  });
}

void asr_dist_group_free(AsrDistGroup* group) {
  try {
    // NCCL wants its communicators destroyed before the process group (torch's
    // destroy_process_group); pending work is already done (collectives block).
    if (group != nullptr && group->cuda) group->cuda->shutdown();
  } catch (...) {
  }
  try {
    delete group;
  } catch (...) {
  }
}

int asr_dist_all_reduce_sum(AsrDistGroup* group, at::Tensor* tensor, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    wait_work(backend_for(group, *tensor).allreduce(tensors, options));
  });
}

int asr_dist_broadcast(AsrDistGroup* group, at::Tensor* tensor, int root, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.rootTensor = 0;
    wait_work(backend_for(group, *tensor).broadcast(tensors, options));
  });
}

// `outputs` holds world_size tensors shaped like `input`; output r receives rank r's input.
int asr_dist_all_gather(AsrDistGroup* group, at::Tensor* input, at::Tensor** outputs,
                        int n_outputs, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> inputs{*input};
    std::vector<std::vector<at::Tensor>> output_lists(1);
    for (int i = 0; i < n_outputs; ++i) output_lists[0].push_back(*outputs[i]);
    wait_work(backend_for(group, *input).allgather(output_lists, inputs, c10d::AllgatherOptions()));
  });
}

int asr_dist_barrier(AsrDistGroup* group, char** err) {
  return guarded(err, [&] { wait_work(backend_of(group).barrier(c10d::BarrierOptions())); });
}

// Closes the Gloo connections and the NCCL backend (the store stays): after a failed collective, so that the
// ranks still waiting on this one fail at once instead of at their timeout. The queue is
// empty then (collectives here are blocking), so the destructor only joins idle threads.
// NCCL's communicators are aborted (a collective may be stuck on the GPU).
int asr_dist_close_backend(AsrDistGroup* group, char** err) {
  return guarded(err, [&] {
    if (group->cuda) {
      auto cuda = std::move(group->cuda);
      cuda->abort();
    }
    group->backend.reset();
  });
}

// Roll call in the job's TCPStore, which outlives the Gloo connections: this rank sets
// `<prefix><rank>`, then polls for every rank's key until all are there or `timeout_ms`
// has passed; present[r] becomes 1 for each rank seen. A store that is gone (its host
// died) throws, reported as an error.
//
// Then a second phase, so that the store's host (rank 0) never leaves, taking the store
// with it, while a survivor still needs it: each rank sets `<prefix>done/<rank>`, then
// waits for the done mark of every rank that has announced itself (each finishes within
// `timeout_ms` of its announcement), and the host also gives a rank that has not
// announced itself yet `timeout_ms` more to come (a survivor that noticed the failure
// late, e.g. on a loaded machine). Everything is capped at twice `timeout_ms` after the
// first phase. A rank that announces itself during this phase is marked present.
// Without it, the host ended its wait first and exited while a later rank was still
// polling, and that rank reported "store cannot be reached" instead of the missing rank
// (seen in CI, 2026-12-01).
int asr_dist_roll_call(AsrDistGroup* group, const char* prefix, int rank, int world_size,
                       int64_t timeout_ms, uint8_t* present, char** err) {
  return guarded(err, [&] {
    const std::string base(prefix);
    group->tcp->set(base + std::to_string(rank), std::vector<uint8_t>{1});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      int seen = 0;
      for (int r = 0; r < world_size; ++r) {
        if (present[r] == 0 && group->tcp->check({base + std::to_string(r)})) present[r] = 1;
        seen += present[r];
      }
      if (seen == world_size || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const std::string done = base + "done/";
    group->tcp->set(done + std::to_string(rank), std::vector<uint8_t>{1});
    const auto phase_start = std::chrono::steady_clock::now();
    const auto late_deadline = phase_start + std::chrono::milliseconds(timeout_ms);
    const auto hard_deadline = phase_start + 2 * std::chrono::milliseconds(timeout_ms);
    while (true) {
      const auto now = std::chrono::steady_clock::now();
      bool waiting = false;
      for (int r = 0; r < world_size; ++r) {
        if (r == rank || group->tcp->check({done + std::to_string(r)})) continue;
        if (present[r] == 0 && group->tcp->check({base + std::to_string(r)})) present[r] = 1;
        if (present[r] != 0 ? now < hard_deadline
                            : group->serves_store && now < late_deadline) {
          waiting = true;
        }
      }
      if (!waiting) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
}

}  // extern "C"
