//! Objects created in the current transaction, recorded by an object_access_hook
//! (OAT_POST_CREATE) and forgotten at transaction end or subtransaction abort.
//! The hook exempts them: a migration may create something and then drop, rename or
//! alter it freely (Drizzle and many tools create-then-alter).

use pgrx::pg_sys::{self, Oid};
use std::cell::RefCell;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Created {
    class_id: Oid,
    object_id: Oid,
    sub_id: i32,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    static CREATED: RefCell<Vec<Created>> = const { RefCell::new(Vec::new()) };
}

static mut PREV_OBJECT_ACCESS_HOOK: pg_sys::object_access_hook_type = None;

/// Was (class, object, sub) created in the current transaction?
pub fn is_new(class_id: Oid, object_id: Oid, sub_id: i32) -> bool {
    CREATED.with(|c| {
        c.borrow()
            .iter()
            .any(|e| e.class_id == class_id && e.object_id == object_id && e.sub_id == sub_id)
    })
}

fn record(class_id: Oid, object_id: Oid, sub_id: i32, subxact: pg_sys::SubTransactionId) {
    CREATED.with(|c| {
        if let Ok(mut v) = c.try_borrow_mut() {
            v.push(Created {
                class_id,
                object_id,
                sub_id,
                subxact,
            })
        }
    });
}

/// Not #[pg_guard]: it must not catch errors raised by the next hook, and nothing here
/// can raise one. No value with a destructor is alive when the next hook runs.
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: Oid,
    object_id: Oid,
    sub_id: i32,
    arg: *mut std::ffi::c_void,
) {
    if access == pg_sys::ObjectAccessType::OAT_POST_CREATE {
        record(class_id, object_id, sub_id, current_subxact());
    }
    crate::audit::backend::object_access(access, class_id, object_id, sub_id);
    if let Some(prev) = PREV_OBJECT_ACCESS_HOOK {
        prev(access, class_id, object_id, sub_id, arg);
    }
}

unsafe extern "C-unwind" {
    #[link_name = "GetCurrentSubTransactionId"]
    fn raw_current_subxact() -> pg_sys::SubTransactionId;
}

fn current_subxact() -> pg_sys::SubTransactionId {
    // SAFETY: a plain getter of backend-local state; it never raises an error.
    unsafe { raw_current_subxact() }
}

unsafe extern "C-unwind" fn xact_callback(
    _event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    // Every event ends (or hands off) the transaction's work: commit, abort, prepare,
    // and their parallel variants. Pre-commit events leave the list alone.
    use pg_sys::XactEvent::*;
    match _event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {}
        _ => CREATED.with(|c| {
            if let Ok(mut v) = c.try_borrow_mut() {
                v.clear();
                v.shrink_to(64);
            }
        }),
    }
}

unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // Subtransaction ids grow monotonically: everything recorded at or after the
        // aborted one belongs to it or to its children.
        CREATED.with(|c| {
            if let Ok(mut v) = c.try_borrow_mut() {
                v.retain(|e| e.subxact < my_subid)
            }
        });
    }
}

pub fn init() {
    unsafe {
        PREV_OBJECT_ACCESS_HOOK = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}
