//! v2 device control: a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! the job's cgroup (`BPF_CGROUP_DEVICE`). The v2 tree has no device knob;
//! the kernel runs the program on every `open` and `mknod` of a device node
//! by a task in the cgroup, and denies the access unless it returns 1.
//!
//! The program is assembled here from the rules and loaded through bpf(2),
//! as runc, crun and youki do, rather than through a BPF crate: it is a
//! straight run of compare-and-jump blocks (five instructions of set-up,
//! at most eight per rule), and the crates that load programs bring an ELF
//! loader and a BTF parser this does not need. The kernel's verifier checks
//! the result at load time.
//!
//! Attached without flags, a second attach replaces the first (an update);
//! the cgroup holds the program, which is freed when the cgroup is removed.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::cgroup::devices::{DeviceRule, DeviceType};
use crate::cgroup::error::CgroupError;
use crate::cgroup::plan::Builder;
use crate::cgroup::resources::Resources;

pub(crate) fn plan(res: &Resources, b: &mut Builder<'_>) {
    match &res.devices {
        Some(rules) => b.device_program(rules.clone()),
        // An update back to "no rules" is a program that allows everything.
        None if b.updating() => b.device_program(vec![
            DeviceRule { kind: DeviceType::Char, major: None, minor: None, access: ALL },
            DeviceRule { kind: DeviceType::Block, major: None, minor: None, access: ALL },
        ]),
        None => {}
    }
}

const ALL: crate::cgroup::devices::Access = crate::cgroup::devices::Access::RWM;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// `dst_reg` in the low four bits, `src_reg` in the high four.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; };
// access_type is (access << 16) | type.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR
const ACC_MKNOD: i32 = 1; // BPF_DEVCG_ACC_MKNOD
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Registers: r1 holds the context on entry and is reused as scratch once
// the fields are loaded.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

/// The program for `rules`: allowed (1) if some rule matches the device's
/// type, number and every access bit asked for; denied (0) otherwise.
pub fn assemble(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, TYPE, R1, CTX_ACCESS_TYPE, 0),
        insn(ALU64_AND_K, TYPE, 0, 0, 0xffff),
        insn(LDX_MEM_W, ACCESS, R1, CTX_ACCESS_TYPE, 0),
        insn(ALU64_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, CTX_MAJOR, 0),
        insn(LDX_MEM_W, MINOR, R1, CTX_MINOR, 0),
    ];
    for rule in rules {
        // The block's tests, each "jump past the block if this differs";
        // the offsets are filled in once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let kind = match rule.kind {
            DeviceType::Char => DEV_CHAR,
            DeviceType::Block => DEV_BLOCK,
        };
        block.push(insn(JMP_JNE_K, TYPE, 0, 0, kind));
        let allowed = [
            (rule.access.mknod, ACC_MKNOD),
            (rule.access.read, ACC_READ),
            (rule.access.write, ACC_WRITE),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |bits, (_, bit)| bits | bit);
        let denied = (ACC_MKNOD | ACC_READ | ACC_WRITE) & !allowed;
        if denied != 0 {
            block.push(insn(ALU64_MOV_X, R1, ACCESS, 0, 0));
            block.push(insn(ALU64_AND_K, R1, 0, 0, denied));
            block.push(insn(JMP_JNE_K, R1, 0, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, MAJOR, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, MINOR, 0, 0, minor as i32));
        }
        block.push(insn(ALU64_MOV_K, R0, 0, 0, 1));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K {
                // Relative to the next instruction: land just past the block.
                ins.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`, up to
/// `expected_attach_type`; the kernel accepts a shorter attribute and
/// takes the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of `union
    // bpf_attr` for `cmd`, and its size is passed with it; the pointers
    // inside it (instructions, license, log) outlive the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint)
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn load(prog: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = CString::new("GPL").expect("no NUL");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..6].copy_from_slice(b"corral");
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads the program for `rules` and attaches it to the cgroup `dir`,
/// replacing the one attached before, if any.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let err = |step, source, verifier| CgroupError::DeviceProgram {
        path: dir.to_path_buf(),
        step,
        source,
        verifier,
    };
    let prog = assemble(rules);
    let prog_fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(first) => {
            // Again with the verifier's log, which says why.
            let mut log = vec![0u8; 64 * 1024];
            let text = match load(&prog, Some(&mut log)) {
                Ok(fd) => return attach_fd(dir, &fd).map_err(|e| err("attach", e, String::new())),
                Err(_) => String::from_utf8_lossy(&log).trim_end_matches('\0').trim().to_owned(),
            };
            return Err(err("load", first, text));
        }
    };
    attach_fd(dir, &prog_fd).map_err(|e| err("attach", e, String::new()))
}

fn attach_fd(dir: &Path, prog: &OwnedFd) -> io::Result<()> {
    let cgroup = File::open(dir)?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::devices::{Access, SAFE_DEVICES};

    /// Runs the program as the kernel would, for one access: a tiny
    /// interpreter of the instructions `assemble` emits.
    fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> i64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads come from the context");
                    r[dst] = i64::from(ctx[(i.off / 4) as usize]);
                }
                ALU64_AND_K => r[dst] &= i64::from(i.imm),
                ALU64_RSH_K => r[dst] = ((r[dst] as u64) >> i.imm) as i64,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i64::from(i.imm),
                JMP_JNE_K => {
                    if r[dst] != i64::from(i.imm) {
                        pc += i.off as usize;
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_what_the_rules_say() {
        let mut rules = SAFE_DEVICES.to_vec();
        let read = Access { read: true, write: false, mknod: false };
        rules.push(DeviceRule::node(DeviceType::Char, 10, 229, read));
        rules.push(DeviceRule {
            kind: DeviceType::Block,
            major: Some(254),
            minor: None,
            access: Access::RWM,
        });
        let prog = assemble(&rules);
        let allowed = |kind, access, major, minor| run(&prog, kind, access, major, minor) == 1;
        assert!(allowed(DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        assert!(allowed(DEV_CHAR, ACC_MKNOD, 1, 9));
        assert!(allowed(DEV_CHAR, ACC_WRITE, 136, 7));
        assert!(!allowed(DEV_BLOCK, ACC_READ, 1, 3), "type matters");
        assert!(!allowed(DEV_CHAR, ACC_READ, 1, 4));
        assert!(allowed(DEV_CHAR, ACC_READ, 10, 229));
        assert!(!allowed(DEV_CHAR, ACC_WRITE, 10, 229), "read-only");
        assert!(!allowed(DEV_CHAR, ACC_READ | ACC_WRITE, 10, 229), "read-only");
        assert!(!allowed(DEV_CHAR, ACC_READ, 10, 200), "tun is not listed");
        assert!(allowed(DEV_BLOCK, ACC_READ | ACC_WRITE, 254, 16));
        assert!(!allowed(DEV_BLOCK, ACC_READ, 8, 0));
        assert_eq!(run(&assemble(&[]), DEV_CHAR, ACC_READ, 1, 3), 0, "no rules: nothing");
    }
}
