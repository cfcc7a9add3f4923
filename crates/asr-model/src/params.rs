//! The model's tensors under their Hugging Face names, in `state_dict` order.
//!
//! A small registry instead of `tch::nn::VarStore`: the order is deterministic (the
//! order transformers registers modules in, which optimizer state and checkpoints rely
//! on), buffers such as batch-norm statistics are kept apart from trainable weights,
//! and the CTC head can be replaced (`--reinit-head`) with a new shape.
use std::collections::HashMap;
use std::fmt;

use tch::{Device, Kind, Tensor};

/// What a tensor is to training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A learned parameter (`nn.Parameter`).
    Parameter,
    /// A buffer saved with the weights but not learned (batch-norm running statistics).
    Buffer,
}

/// One named tensor of the model.
pub struct NamedTensor {
    /// The Hugging Face name, e.g. `wav2vec2.encoder.layers.0.attention.q_proj.weight`.
    pub name: String,
    /// The tensor; modules hold shallow clones of it, so in-place updates are seen by both.
    pub tensor: Tensor,
    /// Parameter or buffer.
    pub role: Role,
    /// How the tensor is randomly initialized (None: derived from another tensor).
    pub(crate) init: Option<Init>,
}

impl fmt::Debug for NamedTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {:?}", self.name, self.tensor.size(), self.role)
    }
}

/// All tensors of a model, in registration order.
#[derive(Debug, Default)]
pub struct ParamStore {
    entries: Vec<NamedTensor>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    /// Every tensor (parameters and buffers) in state_dict order.
    pub fn entries(&self) -> &[NamedTensor] {
        &self.entries
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|i| &self.entries[*i].tensor)
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&NamedTensor> {
        self.index.get(name).map(|i| &self.entries[*i])
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of scalar values in learned parameters.
    pub fn num_parameters(&self) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.role == Role::Parameter)
            .map(|e| e.tensor.numel() as i64)
            .sum()
    }

    pub(crate) fn push(&mut self, name: String, tensor: Tensor, role: Role, init: Option<Init>) {
        debug_assert!(
            !self.index.contains_key(&name),
            "duplicate tensor name {name}"
        );
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push(NamedTensor {
            name,
            tensor,
            role,
            init,
        });
    }

    /// Gives the named tensor a fresh random value from its init scheme (for tensors a
    /// checkpoint did not provide). Returns false when the tensor has no own scheme.
    pub(crate) fn reinitialize(&self, name: &str) -> bool {
        let Some(entry) = self.entry(name) else {
            return false;
        };
        let Some(init) = entry.init else { return false };
        let value = init.make(&entry.tensor.size(), entry.tensor.device());
        tch::no_grad(|| entry.tensor.shallow_clone().copy_(&value));
        true
    }

    /// Removes the entry named `name`, if any, keeping the order of the others.
    pub(crate) fn remove(&mut self, name: &str) -> Option<NamedTensor> {
        let position = self.index.remove(name)?;
        let entry = self.entries.remove(position);
        for i in self.index.values_mut() {
            if *i > position {
                *i -= 1;
            }
        }
        Some(entry)
    }

    /// Inserts an entry at `position` (state_dict order), shifting later ones.
    pub(crate) fn insert(&mut self, position: usize, name: String, tensor: Tensor, init: Init) {
        let position = position.min(self.entries.len());
        self.entries.insert(
            position,
            NamedTensor {
                name,
                tensor,
                role: Role::Parameter,
                init: Some(init),
            },
        );
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
    }

    /// Replaces the tensor of an existing entry (new shape allowed), keeping its place.
    pub(crate) fn replace(&mut self, name: &str, tensor: Tensor) {
        if let Some(i) = self.index.get(name) {
            self.entries[*i].tensor = tensor;
        }
    }
}

/// Creates named tensors under a dotted prefix, mirroring `nn.Module` nesting.
///
/// With `random` false (a checkpoint will be copied in), parameters are left
/// uninitialized instead of drawn: loading then neither spends time on random numbers
/// nor consumes libtorch's generator.
pub(crate) struct Scope<'a> {
    store: &'a std::cell::RefCell<ParamStore>,
    prefix: String,
    pub(crate) device: Device,
    random: bool,
}

impl<'a> Scope<'a> {
    pub(crate) fn root(
        store: &'a std::cell::RefCell<ParamStore>,
        device: Device,
        random: bool,
    ) -> Scope<'a> {
        Scope {
            store,
            prefix: String::new(),
            device,
            random,
        }
    }

    /// The scope of a child module (`self.<name>` in Python).
    pub(crate) fn sub(&self, name: impl fmt::Display) -> Scope<'a> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        };
        Scope {
            store: self.store,
            prefix,
            device: self.device,
            random: self.random,
        }
    }

    /// The full name of a tensor of this module.
    pub(crate) fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// Registers a learned float32 parameter initialized by `init`, requiring gradients.
    pub(crate) fn param(&self, name: &str, dims: &[i64], init: Init) -> Tensor {
        let value = if self.random {
            init.make(dims, self.device)
        } else {
            self.empty(dims)
        };
        self.register(name, value, Some(init))
    }

    /// Registers a learned parameter whose random value `value` computes (weight-norm
    /// pairs, where `g` is the norm of `v`).
    pub(crate) fn param_from(
        &self,
        name: &str,
        dims: &[i64],
        value: impl FnOnce() -> Tensor,
    ) -> Tensor {
        let value = if self.random {
            value()
        } else {
            self.empty(dims)
        };
        self.register(name, value, None)
    }

    /// Whether parameters get random values (false when a checkpoint follows).
    pub(crate) fn is_random(&self) -> bool {
        self.random
    }

    fn empty(&self, dims: &[i64]) -> Tensor {
        Tensor::zeros(dims, (Kind::Float, self.device))
    }

    fn register(&self, name: &str, value: Tensor, init: Option<Init>) -> Tensor {
        let tensor = value.to_kind(Kind::Float).detach().set_requires_grad(true);
        self.store.borrow_mut().push(
            self.name(name),
            tensor.shallow_clone(),
            Role::Parameter,
            init,
        );
        tensor
    }

    /// Registers a buffer (deterministic initial value).
    pub(crate) fn buffer(&self, name: &str, value: Tensor) -> Tensor {
        let tensor = value.detach();
        self.store
            .borrow_mut()
            .push(self.name(name), tensor.shallow_clone(), Role::Buffer, None);
        tensor
    }
}

/// transformers' init schemes, as applied to each tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Init {
    /// `nn.init.normal_(mean=0, std)`.
    Normal(f64),
    /// `nn.init.uniform_(a, b)`.
    Uniform(f64, f64),
    /// `nn.init.kaiming_normal_` defaults.
    KaimingNormal,
    /// PyTorch's default conv/linear weight init.
    TorchDefault,
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

impl Init {
    pub(crate) fn make(self, dims: &[i64], device: Device) -> Tensor {
        match self {
            Init::Normal(std) => init::normal(dims, std, device),
            Init::Uniform(lo, hi) => init::uniform(dims, lo, hi, device),
            Init::KaimingNormal => init::kaiming_normal(dims, device),
            Init::TorchDefault => init::torch_default_weight(dims, device),
            Init::Zeros => init::zeros(dims, device),
            Init::Ones => init::ones(dims, device),
        }
    }
}

/// Random initializers, on the scope's device, drawing from libtorch's generator (so
/// `tch::manual_seed` makes them reproducible).
pub(crate) mod init {
    use tch::{Device, Kind, Tensor};

    fn opts(device: Device) -> (Kind, Device) {
        (Kind::Float, device)
    }

    /// `nn.init.normal_(mean=0, std)`.
    pub(crate) fn normal(dims: &[i64], std: f64, device: Device) -> Tensor {
        tch::no_grad(|| Tensor::randn(dims, opts(device)) * std)
    }

    /// `nn.init.uniform_(a=lo, b=hi)`.
    pub(crate) fn uniform(dims: &[i64], lo: f64, hi: f64, device: Device) -> Tensor {
        tch::no_grad(|| Tensor::empty(dims, opts(device)).uniform_(lo, hi))
    }

    /// `nn.init.kaiming_normal_` with its defaults (fan_in, gain sqrt(2)): the fan-in of a
    /// conv weight `[out, in / groups, kernel]` is `in / groups * kernel`.
    pub(crate) fn kaiming_normal(dims: &[i64], device: Device) -> Tensor {
        let fan_in: i64 = dims.iter().skip(1).product();
        normal(dims, (2.0 / fan_in.max(1) as f64).sqrt(), device)
    }

    /// PyTorch's default `Conv1d`/`Linear` weight init (`kaiming_uniform_(a=sqrt(5))`):
    /// uniform in +-1/sqrt(fan_in).
    pub(crate) fn torch_default_weight(dims: &[i64], device: Device) -> Tensor {
        let fan_in: i64 = dims.iter().skip(1).product();
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        uniform(dims, -bound, bound, device)
    }

    pub(crate) fn zeros(dims: &[i64], device: Device) -> Tensor {
        Tensor::zeros(dims, opts(device))
    }

    pub(crate) fn ones(dims: &[i64], device: Device) -> Tensor {
        Tensor::ones(dims, opts(device))
    }
}
