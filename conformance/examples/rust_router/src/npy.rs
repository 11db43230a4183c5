//! Tensors: raw little-endian row-major data (CONF-4.3), and NumPy `.npy` version 1.0 files
//! (CONF-1.4) for reading a whole file and for writing outputs (CONF-4.4 accepts either form).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

#[derive(Clone, Debug)]
pub struct Tensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Raw little-endian bytes, row-major.
    pub data: Vec<u8>,
}

/// Bytes per element of a conformance dtype (CONF-1.4); `None` for an unknown name.
pub fn itemsize(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "bool" | "int8" | "uint8" => 1,
        "int16" | "uint16" | "float16" | "bfloat16" => 2,
        "int32" | "uint32" | "float32" => 4,
        "int64" | "uint64" | "float64" | "complex64" => 8,
        _ => return None,
    })
}

/// NumPy's `descr` of a dtype (bfloat16 is stored as its uint16 bit patterns).
fn descr(dtype: &str) -> &'static str {
    match dtype {
        "bool" => "|b1",
        "int8" => "|i1",
        "uint8" => "|u1",
        "int16" => "<i2",
        "uint16" | "bfloat16" => "<u2",
        "float16" => "<f2",
        "int32" => "<i4",
        "uint32" => "<u4",
        "float32" => "<f4",
        "int64" => "<i8",
        "uint64" => "<u8",
        "float64" => "<f8",
        "complex64" => "<c8",
        _ => "|V1",
    }
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    fn words<const N: usize>(&self) -> impl Iterator<Item = [u8; N]> + '_ {
        self.data.chunks_exact(N).map(|c| c.try_into().unwrap())
    }
    pub fn f32s(&self) -> Vec<f32> {
        self.words::<4>().map(f32::from_le_bytes).collect()
    }
    pub fn f64s(&self) -> Vec<f64> {
        self.words::<8>().map(f64::from_le_bytes).collect()
    }
    pub fn u16s(&self) -> Vec<u16> {
        self.words::<2>().map(u16::from_le_bytes).collect()
    }
    pub fn u64s(&self) -> Vec<u64> {
        self.words::<8>().map(u64::from_le_bytes).collect()
    }
    pub fn from_f32(shape: Vec<usize>, v: &[f32]) -> Tensor {
        Tensor { dtype: "float32".into(), shape, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    pub fn from_f64(shape: Vec<usize>, v: &[f64]) -> Tensor {
        Tensor { dtype: "float64".into(), shape, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    pub fn from_i32(shape: Vec<usize>, v: &[i32]) -> Tensor {
        Tensor { dtype: "int32".into(), shape, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    pub fn from_i64(shape: Vec<usize>, v: &[i64]) -> Tensor {
        Tensor { dtype: "int64".into(), shape, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    pub fn from_u64(shape: Vec<usize>, v: &[u64]) -> Tensor {
        Tensor { dtype: "uint64".into(), shape, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
}

/// Read `nbytes` bytes at byte `offset` of `path`: the raw data of a protocol tensor input.
pub fn read_raw(path: &str, offset: u64, nbytes: usize, dtype: &str, shape: Vec<usize>) -> std::io::Result<Tensor> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut data = vec![0u8; nbytes];
    f.read_exact(&mut data)?;
    Ok(Tensor { dtype: dtype.to_string(), shape, data })
}

/// Read a whole `.npy` file (version 1.0 or 2.0, little-endian, C order). The protocol hands the
/// data offset, so the harness itself does not need this; it is here for completeness and tests.
#[allow(dead_code)]
pub fn read_npy(path: &str, dtype: &str) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{path}: not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).map_err(|e| e.to_string())?;
    if header.contains("'fortran_order': True") {
        return Err(format!("{path}: Fortran order"));
    }
    let lo = header.find("'shape': (").ok_or("no shape")? + 10;
    let hi = lo + header[lo..].find(')').ok_or("bad shape")?;
    let shape = header[lo..hi]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor { dtype: dtype.to_string(), shape, data: bytes[start + hlen..].to_vec() })
}

/// Write a `.npy` version 1.0 file: magic, version, header length, a header dict padded with
/// spaces and a newline to a multiple of 64 bytes, then the raw little-endian data (CONF-1.4).
pub fn write_npy(path: &str, t: &Tensor) -> std::io::Result<()> {
    let shape = match t.shape.len() {
        1 => format!("({},)", t.shape[0]),
        _ => format!("({})", t.shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr(&t.dtype), shape);
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&t.data);
    File::create(path)?.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let dir = std::env::temp_dir().join(format!("rust_router_npy_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let t = Tensor::from_f32(vec![2, 3], &[1.0, -0.0, 2.5, f32::MAX, 1e-45, -3.0]);
        write_npy(p.to_str().unwrap(), &t).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0);
        let back = read_npy(p.to_str().unwrap(), "float32").unwrap();
        assert_eq!(back.shape, vec![2, 3]);
        assert_eq!(back.data, t.data);
        let raw = read_raw(p.to_str().unwrap(), (bytes.len() - 24) as u64, 24, "float32", vec![6]).unwrap();
        assert_eq!(raw.f32s()[3], f32::MAX);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
