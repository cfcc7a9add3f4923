//! Reading `pytorch_model.bin` (the PyTorch >= 1.6 zip format) without Python or
//! libtorch's TorchScript unpickler.
//!
//! A `torch.save` zip holds `<archive>/data.pkl` (a pickle, protocol 2) and one entry
//! per storage, `<archive>/data/<key>`. The pickle describes a dict (plain, or a
//! `collections.OrderedDict` with a `_metadata` attribute, which is what
//! `torch.save(model.state_dict())` writes) mapping names to tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, where each
//! storage is a persistent id `('storage', torch.FloatStorage, key, location, numel)`.
//! This module runs just enough of the pickle machine to recover those tensors; any
//! other object is kept opaque. libtorch's own reader (`torch::jit::_load_parameters`,
//! behind `tch::Tensor::loadz_multi`) rejects the OrderedDict form in some releases;
//! see tch-loading.md.
//!
//! Legacy (pre-1.6, non-zip) files are recognized and refused with a conversion hint.
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::ModelError;

/// A pickled value, as far as state dicts need.
#[derive(Debug, Clone)]
enum Value {
    Mark,
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// Any other object built by REDUCE/NEWOBJ; its content does not matter here.
    Opaque,
}

/// A storage named by a persistent id.
#[derive(Debug, Clone)]
struct StorageRef {
    kind: Kind,
    key: String,
    numel: i64,
}

/// A tensor view of a storage.
#[derive(Debug, Clone)]
struct TensorRef {
    storage: StorageRef,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn element_size(kind: Kind) -> i64 {
    match kind {
        Kind::Double | Kind::Int64 => 8,
        Kind::Float | Kind::Int => 4,
        Kind::Half | Kind::BFloat16 | Kind::Int16 => 2,
        _ => 1,
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

type PResult<T> = Result<T, String>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len());
        match end {
            Some(end) => {
                let slice = &self.data[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(format!("truncated pickle at byte {}", self.pos)),
        }
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> PResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> PResult<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> PResult<String> {
        let start = self.pos;
        let rest = &self.data[start..];
        let n = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("unterminated line in pickle")?;
        self.pos += n + 1;
        Ok(String::from_utf8_lossy(&rest[..n]).into_owned())
    }

    fn utf8(&mut self, n: usize) -> PResult<Value> {
        let bytes = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn pop(&mut self) -> PResult<Value> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle MARK not found")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> PResult<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn memo_put(&mut self, key: u32) -> PResult<()> {
        let value = self
            .stack
            .last()
            .cloned()
            .ok_or("MEMOIZE on an empty stack")?;
        self.memo.insert(key, value);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> PResult<()> {
        let value = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("unknown memo key {key}"))?;
        self.stack.push(value);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> PResult<()> {
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.top()? {
            Value::Dict(entries) => entries.extend(pairs),
            Value::Opaque => {}
            other => return Err(format!("SETITEMS on a non-dict {other:?}")),
        }
        Ok(())
    }

    fn run(mut self) -> PResult<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Opaque), // NEWTRUE, NEWFALSE
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v.into()))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v.into()))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err("integer too large in pickle".into());
                    }
                    let mut v: i64 = 0;
                    for (i, b) in bytes.iter().enumerate() {
                        v |= (*b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    self.take(8)?; // BINFLOAT: no float matters in a state dict
                    self.stack.push(Value::Opaque)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                0x8f => self.stack.push(Value::Opaque), // EMPTY_SET
                0x90 => {
                    self.pop_mark()?; // ADDITEMS
                }
                0x91 => {
                    self.pop_mark()?; // FROZENSET
                    self.stack.push(Value::Opaque)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a]))
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b]))
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(vec![a, b, c]))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(items)?
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Value::List(items) = self.top()? {
                        items.push(v)
                    }
                }
                b'e' => {
                    let vs = self.pop_mark()?;
                    if let Value::List(items) = self.top()? {
                        items.extend(vs)
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(k.into())?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(k.into())?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL without strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_load(pid)?)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args)
                    let _args = self.pop()?;
                    let _cls = self.pop()?;
                    self.stack.push(Value::Opaque)
                }
                b'b' => {
                    // BUILD: the state of a dict (OrderedDict `_metadata`) or tensor is not needed.
                    self.pop()?;
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ))
                }
            }
        }
    }
}

fn persistent_load(pid: Value) -> PResult<Value> {
    let Value::Tuple(items) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(_, storage_type), Value::Str(key), _location, Value::Int(numel)]
            if tag == "storage" =>
        {
            let kind = storage_kind(storage_type)
                .ok_or_else(|| format!("unsupported storage type {storage_type}"))?;
            Ok(Value::Storage(StorageRef {
                kind,
                key: key.clone(),
                numel: *numel,
            }))
        }
        _ => Err(format!("unsupported persistent id {items:?}")),
    }
}

fn int_list(value: &Value) -> PResult<Vec<i64>> {
    match value {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::Int(i) => Ok(*i),
                other => Err(format!("expected an integer, found {other:?}")),
            })
            .collect(),
        other => Err(format!("expected a tuple of integers, found {other:?}")),
    }
}

fn reduce(callable: Value, args: Value) -> PResult<Value> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Opaque);
    };
    let args = match args {
        Value::Tuple(items) => items,
        _ => return Ok(Value::Opaque),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            match args.as_slice() {
                [Value::Storage(storage), Value::Int(offset), size, stride, ..] => {
                    Ok(Value::Tensor(TensorRef {
                        storage: storage.clone(),
                        offset: *offset,
                        size: int_list(size)?,
                        stride: int_list(stride)?,
                    }))
                }
                _ => Err(format!("unexpected arguments to {module}.{name}")),
            }
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor),
            _ => Err(format!("unexpected arguments to {module}.{name}")),
        },
        _ => Ok(Value::Opaque),
    }
}

/// Whether `bytes` start like a zip archive.
fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Reads every tensor of a `pytorch_model.bin`, in file order, as CPU tensors of the
/// file's dtype.
pub(crate) fn read_pytorch_bin(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    let format_error = |reason: String| ModelError::WeightsFormat {
        path: path.to_path_buf(),
        reason,
    };
    let io_error = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io_error)?;
    if !is_zip(&magic[..n]) {
        // Legacy torch.save: a pickled magic number (protocol 2 starts with 0x80 0x02);
        // even older ones are tar archives.
        return Err(ModelError::LegacyCheckpoint {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format_error(format!("not a valid zip archive: {e}")))?;
    let pkl_name = archive
        .file_names()
        .find(|name| *name == "data.pkl" || name.ends_with("/data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| {
            format_error("no data.pkl in the archive: not a torch.save checkpoint".into())
        })?;
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    let read_entry =
        |archive: &mut zip::ZipArchive<std::fs::File>, name: &str| -> Result<Vec<u8>, ModelError> {
            let mut entry = archive
                .by_name(name)
                .map_err(|e| format_error(format!("missing archive entry {name}: {e}")))?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(io_error)?;
            Ok(bytes)
        };
    let byteorder_name = format!("{prefix}byteorder");
    if archive.file_names().any(|n| n == byteorder_name) {
        let order = read_entry(&mut archive, &byteorder_name)?;
        if order.trim_ascii() != b"little" {
            return Err(format_error(
                "big-endian checkpoints are not supported".into(),
            ));
        }
    }
    let pickle = read_entry(&mut archive, &pkl_name)?;
    let machine = Machine {
        data: &pickle,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    let root = machine
        .run()
        .map_err(|e| format_error(format!("{pkl_name}: {e}")))?;
    let Value::Dict(entries) = root else {
        return Err(format_error(
            "the pickled object is not a name -> tensor dict (a training checkpoint or a whole \
             pickled model?); save model.state_dict() instead"
                .into(),
        ));
    };
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Value::Str(name) = key else {
            return Err(format_error(format!(
                "non-string key {key:?} in the state dict"
            )));
        };
        let Value::Tensor(t) = value else {
            return Err(format_error(format!("{name} is not a tensor")));
        };
        if !storages.contains_key(&t.storage.key) {
            let bytes = read_entry(&mut archive, &format!("{prefix}data/{}", t.storage.key))?;
            let expected = t.storage.numel * element_size(t.storage.kind);
            if bytes.len() as i64 != expected {
                return Err(format_error(format!(
                    "storage {} of {name} has {} bytes, expected {expected}",
                    t.storage.key,
                    bytes.len()
                )));
            }
            let storage = Tensor::f_from_data_size(&bytes, &[t.storage.numel], t.storage.kind)
                .map_err(|e| format_error(format!("{name}: {e}")))?;
            storages.insert(t.storage.key.clone(), storage);
        }
        let storage = &storages[&t.storage.key];
        // Bounds of the view inside its storage, checked before as_strided.
        let last = t.offset
            + t.size
                .iter()
                .zip(&t.stride)
                .map(|(n, s)| (n - 1).max(0) * s)
                .sum::<i64>();
        let empty = t.size.contains(&0);
        if t.size.len() != t.stride.len() || t.offset < 0 || (!empty && last >= t.storage.numel) {
            return Err(format_error(format!(
                "{name}: tensor view lies outside its storage"
            )));
        }
        let tensor = storage
            .f_as_strided(t.size.as_slice(), t.stride.as_slice(), t.offset)
            .and_then(|v| v.f_contiguous())
            .map_err(|e| format_error(format!("{name}: {e}")))?;
        tensors.push((name, tensor));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_is_signed() {
        // PROTO 2, LONG1 2 bytes 0xff 0xff (-1), STOP
        let data = [0x80, 2, 0x8a, 2, 0xff, 0xff, b'.'];
        let m = Machine {
            data: &data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        };
        assert!(matches!(m.run().unwrap(), Value::Int(-1)));
    }

    #[test]
    fn truncated_input_is_an_error() {
        let data = [0x80, 2, b'X', 10, 0, 0, 0, b'a'];
        let m = Machine {
            data: &data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        };
        assert!(m.run().unwrap_err().contains("truncated"));
    }
}
