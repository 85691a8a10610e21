//! `latency --slower-than` and `--events` in the kernel: the arguments of a measured call are
//! stashed at its entry (only when `--arg` asks for them), and at its return a call at least
//! `min_ns` long that the filter passed is sent through the `EVENTS` ring buffer, or counted
//! in `EVENT_DROPS` when the buffer is full. Nothing here runs inside the timed span: the
//! entry stashes before its clock read, the exit sends after its own.
use crate::reads::read_value;
use crate::{regs, user_memory};
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use probe_ebpf::{
    EntryKey, Event, EventArgs, EventArgsKey, EventConfig, EventSources, ValueCookie, ValueSource, EVENT_ARGS_LOST,
    EVENT_ARG_READ, EVENT_GOID, EVENT_RET, EVENT_STACK, EVENT_TEXT_BYTES, EVENT_TEXT_CUT, LEAF_GO_STRING,
    MAX_EVENT_ARGS,
};

/// The events' settings (off by default); set by the loader.
#[no_mangle]
static EVENTS_CONFIG: EventConfig = EventConfig::OFF;

/// The calls sent to user space; sized by the loader (bytes, a power of two of pages).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Per slot: the calls `EVENTS` could not take.
#[map]
static EVENT_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per slot: what its events read (`EventSources`); set by the loader.
#[map]
static EVENT_SOURCES: Array<EventSources> = Array::with_max_entries(1, 0);

/// The arguments of the calls in flight, stashed at their entry, by (process, slot, goroutine
/// or thread, depth): each call's replace those of the last call at its depth. Never removed
/// (an LRU map would recycle a key's value under the program writing it): those of threads
/// that are gone stay, and once the map is full a new key's calls show no arguments.
#[map]
static EVENT_ARGS: HashMap<EventArgsKey, EventArgs> = HashMap::with_max_entries(1, 0);

#[inline(always)]
fn config() -> EventConfig {
    // Volatile, so the loader's settings are read rather than the defaults.
    unsafe { core::ptr::read_volatile(&EVENTS_CONFIG) }
}

/// `EventConfig::text`, loaded straight from the read-only global, so the verifier knows it.
#[inline(always)]
fn text_args() -> u32 {
    unsafe { core::ptr::read_volatile(&EVENTS_CONFIG.text) }
}

/// `EventConfig::nargs`, as `text_args`.
#[inline(always)]
fn max_args() -> usize {
    unsafe { core::ptr::read_volatile(&EVENTS_CONFIG.nargs) as usize }
}

#[inline(always)]
fn args_key(key: &EntryKey, depth: u64) -> EventArgsKey {
    EventArgsKey { tgid: key.tgid, slot: key.slot, context: key.context, depth }
}

/// At a measured call's entry, before its clock read: its `--arg`s, if any are asked for
/// (`EventArgs::NONE` otherwise). The outermost call keeps them in its `Entry`; a nested one
/// stashes them (`stash_args`).
#[inline(always)]
pub(crate) fn entry_args(regs: &pt_regs, key: &EntryKey) -> EventArgs {
    let mut args = EventArgs::NONE;
    let cfg = config();
    if cfg.on == 0 || cfg.args == 0 || key.slot >= cfg.slots {
        return args;
    }
    let Some(sources) = EVENT_SOURCES.get(key.slot) else { return args };
    let nargs = sources.nargs as usize;
    for i in 0..MAX_EVENT_ARGS {
        if i >= nargs || i >= max_args() {
            break;
        }
        let Some(cookie) = ValueCookie::decode(sources.args[i]) else { continue };
        if text_args() & (1 << i) != 0 && sources.text & (1 << i) != 0 {
            // A string: where it is now; its bytes are read at the return, into the event.
            if let Some((at, len)) = text_at(regs, cookie.source) {
                args.text_at[i] = at;
                args.values[i] = len;
                args.read |= EVENT_ARG_READ << i;
            }
        } else if let Some(v) = read_value(regs, &cookie) {
            args.values[i] = v;
            args.read |= EVENT_ARG_READ << i;
        }
    }
    args
}

/// Where the string `source` names is, and its length (-1: a C string's, known once read).
#[inline(always)]
fn text_at(regs: &pt_regs, source: ValueSource) -> Option<(u64, i64)> {
    match source {
        ValueSource::GoString { ptr, len } => Some((regs::register(regs, ptr)?, regs::register(regs, len)? as i64)),
        ValueSource::CString { ptr } => Some((regs::register(regs, ptr)?, -1)),
        ValueSource::CStringOnStack { offset } => {
            Some((user_memory::read::<u64, false>(regs::stack_pointer(regs).wrapping_add(offset as u64))?, -1))
        }
        _ => None,
    }
}

/// Reads string argument `i`'s bytes into the event being sent, from where its entry found
/// the string; an argument whose bytes cannot be read is marked unread.
#[inline(always)]
fn read_text(event: &mut Event, i: usize, at: u64) {
    let len = event.args[i & (MAX_EVENT_ARGS - 1)];
    let Some(dst) = event.text.get_mut(i) else { return };
    let read = if len >= 0 {
        let mut n = len as u64;
        if n > EVENT_TEXT_BYTES as u64 {
            n = EVENT_TEXT_BYTES as u64;
            event.flags |= EVENT_TEXT_CUT << i;
        }
        let n = n as usize;
        match dst.get_mut(..n) {
            Some(bytes) if n > 0 => user_memory::read_buf::<false>(at, bytes).then_some(n),
            _ => Some(0),
        }
    } else {
        let n = user_memory::read_str::<false>(at, dst);
        if n.is_some_and(|n| n >= EVENT_TEXT_BYTES - 1) {
            event.flags |= EVENT_TEXT_CUT << i;
        }
        n
    };
    match read {
        Some(n) => event.text_len[i & (MAX_EVENT_ARGS - 1)] = n as u32,
        None => event.flags &= !(EVENT_ARG_READ << i),
    }
}

/// The arguments of a measured call nested inside another of the same function, or of the
/// outer one as it moves to the nested stack: into `EVENT_ARGS` under the call's depth.
#[inline(always)]
pub(crate) fn stash_args(key: &EntryKey, depth: u64, args: &EventArgs) {
    let cfg = config();
    if cfg.on == 0 || cfg.args == 0 || key.slot >= cfg.slots {
        return;
    }
    // Written over the arguments of the last call at this depth, which the exit leaves in
    // place: no removal per call. Only this goroutine or thread uses its key, and nothing
    // deletes it, so the value stays its own while written. A key that finds no room is not
    // stored: its exit finds no arguments and says so (`EVENT_ARGS_LOST`), never another
    // call's.
    let akey = args_key(key, depth);
    match EVENT_ARGS.get_ptr_mut(&akey) {
        Some(stashed) => unsafe { *stashed = *args },
        None => {
            let _ = EVENT_ARGS.insert(&akey, args, 0);
        }
    }
}

/// At a measured call's return, after its clock read: sends it if it is slow enough and
/// `passed` the filter, with `args` from its `Entry` (None: a nested call's, in `EVENT_ARGS`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_return(
    regs: &pt_regs,
    key: &EntryKey,
    depth: u64,
    ns: u64,
    now: u64,
    go: bool,
    uretprobe: bool,
    passed: bool,
    args: Option<&EventArgs>,
) {
    let cfg = config();
    if cfg.on == 0 || key.slot >= cfg.slots {
        return;
    }
    if !passed || ns < cfg.min_ns {
        return; // its stashed arguments stay until the next call at its depth replaces them
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        if let Some(drops) = EVENT_DROPS.get_ptr_mut(key.slot) {
            // Per-CPU value: only this CPU's programs write it.
            unsafe { *drops += 1 };
        }
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    // Written in place in the ring buffer: an `Event` on the BPF stack besides the exit's own
    // state would pass its 512 bytes.
    // Every field but `text` set one by one: zeroing all 360 bytes became a byte-at-a-time
    // memset the verifier followed byte by byte on every path here (its main work on these
    // programs). `text` is read only up to `text_len`.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    // Volatile: plain stores of zeros are merged back into a memset.
    fn set<T>(field: &mut T, value: T) {
        unsafe { core::ptr::write_volatile(field, value) }
    }
    set(&mut event.ktime_ns, now);
    set(&mut event.latency_ns, ns);
    set(&mut event.goid, 0);
    set(&mut event.pid, (pid_tgid >> 32) as u32);
    set(&mut event.tid, pid_tgid as u32);
    set(&mut event.slot, key.slot);
    set(&mut event.flags, 0);
    set(&mut event.ret, 0);
    set(&mut event.stack, 0);
    for i in 0..MAX_EVENT_ARGS {
        set(&mut event.args[i], 0);
        set(&mut event.text_len[i], 0);
    }
    if cfg.stack != 0 {
        // Walked as `--by stack` walks it; frames stored once per distinct stack.
        if let Ok(hash) = crate::stacks::stack_hash(regs, uretprobe, pid_tgid >> 32) {
            event.stack = hash;
            event.flags |= EVENT_STACK;
        }
    }
    if go && cfg.goid_offset != 0 {
        // Go: the context is the goroutine's g.
        if let Ok(goid) = unsafe { bpf_probe_read_user(key.context.wrapping_add(cfg.goid_offset) as *const u64) } {
            event.goid = goid;
            event.flags |= EVENT_GOID;
        }
    }
    if let Some(sources) = EVENT_SOURCES.get(key.slot) {
        if sources.ret != 0 {
            if let Some(v) = ValueCookie::decode(sources.result).and_then(|c| read_value(regs, &c)) {
                event.ret = v;
                event.flags |= EVENT_RET;
            }
        }
        if sources.nargs != 0 {
            let stashed = match args {
                Some(args) => Some(args),
                None => unsafe { EVENT_ARGS.get(&args_key(key, depth)) },
            };
            // Copied out first, so the verifier follows the strings' reads once, not once per
            // place the arguments were kept.
            let mut text_at = [0u64; MAX_EVENT_ARGS];
            match stashed {
                Some(args) => {
                    // Word by word (volatile): a whole-array copy became a byte-at-a-time
                    // memmove for the verifier to follow.
                    for i in 0..MAX_EVENT_ARGS {
                        event.args[i] = unsafe { core::ptr::read_volatile(&args.values[i]) };
                        text_at[i] = unsafe { core::ptr::read_volatile(&args.text_at[i]) };
                    }
                    event.flags |= args.read;
                }
                None => event.flags |= EVENT_ARGS_LOST,
            }
            if text_args() != 0 {
                for (i, &at) in text_at.iter().enumerate() {
                    if text_args() & (1 << i) != 0
                        && sources.text & (1 << i) != 0
                        && event.flags & (EVENT_ARG_READ << i) != 0
                    {
                        read_text(event, i, at);
                    }
                }
            }
        }
    }
    entry.submit(0);
}
