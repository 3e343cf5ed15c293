/*
 * engine._ring: the few operations of the shared-memory ring that need exact memory ordering
 * across processes, plus the writer's per-record path.
 *
 * Python cannot issue memory fences. On x86-64 (total store order) plain stores are seen by
 * other cores in program order, but a weakly ordered CPU (arm64) may reorder them, and even on
 * x86 a store followed by a load (publish the tail, then look for sleeping readers) needs a full
 * fence. This module provides those operations with C11/GCC atomics; engine/_ringpy.py is the
 * pure-Python fallback used when this module could not be compiled (x86-64 only).
 *
 * Protocol (Agrona broadcast buffer style):
 *   writer: intent = seq + k; release fence; write slots; tail = next (release);
 *           full fence; if waiters: futex += 1; futex_wake(all)
 *   reader: t = tail (acquire); copy slots < t; acquire fence; i = intent;
 *           slots with seq < i - capacity may have been overwritten during the copy: discard.
 *   sleep:  w = futex; waiters += 1 (seq_cst); if tail > pos: done; futex_wait(futex, w)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RECORD_SIZE 64

/* ------------------------------------------------------------------------------------ */
/* helpers                                                                              */

static int
check_offset(Py_buffer *view, Py_ssize_t off, Py_ssize_t width)
{
    if (off < 0 || off % width != 0 || off + width > view->len) {
        PyErr_Format(PyExc_ValueError, "offset %zd out of range or misaligned", off);
        return -1;
    }
    return 0;
}

static long
futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static void
wake_all(uint32_t *word)
{
    __atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST);
    futex(word, FUTEX_WAKE, INT32_MAX, NULL);
}

/* ------------------------------------------------------------------------------------ */
/* Shared: ordered access to words of a shared buffer                                   */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int held;
} Shared;

static int
Shared_init(Shared *self, PyObject *args, PyObject *kwds)
{
    PyObject *obj, *path = NULL; /* path: used by the Python fallback for its lock */
    if (!PyArg_ParseTuple(args, "O|O", &obj, &path))
        return -1;
    if (PyObject_GetBuffer(obj, &self->view, PyBUF_WRITABLE) < 0)
        return -1;
    self->held = 1;
    return 0;
}

static void
Shared_dealloc(Shared *self)
{
    if (self->held)
        PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define SHARED_CHECK(self)                                                  \
    if (!(self)->held) {                                                    \
        PyErr_SetString(PyExc_ValueError, "shared buffer released");        \
        return NULL;                                                        \
    }

static PyObject *
Shared_load(Shared *self, PyObject *arg)
{
    SHARED_CHECK(self);
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    if (check_offset(&self->view, off, 8) < 0)
        return NULL;
    uint64_t *p = (uint64_t *)((char *)self->view.buf + off);
    return PyLong_FromUnsignedLongLong(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

/* Load after reading data: the data loads may not move below this one. */
static PyObject *
Shared_load_after_read(Shared *self, PyObject *arg)
{
    SHARED_CHECK(self);
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    if (check_offset(&self->view, off, 8) < 0)
        return NULL;
    uint64_t *p = (uint64_t *)((char *)self->view.buf + off);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return PyLong_FromUnsignedLongLong(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static PyObject *
Shared_store(Shared *self, PyObject *const *args, Py_ssize_t nargs)
{
    SHARED_CHECK(self);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "store(offset, value)");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[0]);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long v = PyLong_AsUnsignedLongLong(args[1]);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (check_offset(&self->view, off, 8) < 0)
        return NULL;
    __atomic_store_n((uint64_t *)((char *)self->view.buf + off), v, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* wait(futex_off, waiters_off, tail_off, pos, timeout_s) -> True if tail > pos on return */
static PyObject *
Shared_wait(Shared *self, PyObject *args)
{
    SHARED_CHECK(self);
    Py_ssize_t futex_off, waiters_off, tail_off;
    unsigned long long pos;
    double timeout;
    if (!PyArg_ParseTuple(args, "nnnKd", &futex_off, &waiters_off, &tail_off, &pos, &timeout))
        return NULL;
    if (check_offset(&self->view, futex_off, 4) < 0 ||
        check_offset(&self->view, waiters_off, 4) < 0 ||
        check_offset(&self->view, tail_off, 8) < 0)
        return NULL;
    char *base = (char *)self->view.buf;
    uint32_t *word = (uint32_t *)(base + futex_off);
    uint32_t *waiters = (uint32_t *)(base + waiters_off);
    uint64_t *tail = (uint64_t *)(base + tail_off);
    struct timespec ts;
    if (timeout < 0)
        timeout = 0;
    ts.tv_sec = (time_t)timeout;
    ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);

    int ready;
    Py_BEGIN_ALLOW_THREADS
    uint32_t w = __atomic_load_n(word, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
    ready = __atomic_load_n(tail, __ATOMIC_SEQ_CST) > pos;
    if (!ready) {
        futex(word, FUTEX_WAIT, w, &ts);
        ready = __atomic_load_n(tail, __ATOMIC_ACQUIRE) > pos;
    }
    __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ready);
}

static PyObject *
Shared_wake(Shared *self, PyObject *arg)
{
    SHARED_CHECK(self);
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    if (check_offset(&self->view, off, 4) < 0)
        return NULL;
    wake_all((uint32_t *)((char *)self->view.buf + off));
    Py_RETURN_NONE;
}

static PyObject *
Shared_release(Shared *self, PyObject *Py_UNUSED(ignored))
{
    if (self->held) {
        PyBuffer_Release(&self->view);
        self->held = 0;
    }
    Py_RETURN_NONE;
}

static PyMethodDef Shared_methods[] = {
    {"load", (PyCFunction)Shared_load, METH_O, "acquire-load a u64 at offset"},
    {"load_after_read", (PyCFunction)Shared_load_after_read, METH_O,
     "acquire fence, then load a u64 at offset"},
    {"store", (PyCFunction)(void (*)(void))Shared_store, METH_FASTCALL,
     "release-store a u64 at offset"},
    {"wait", (PyCFunction)Shared_wait, METH_VARARGS,
     "sleep until tail > pos, a wake-up, or the timeout"},
    {"wake", (PyCFunction)Shared_wake, METH_O, "wake every sleeper on the futex word"},
    {"release", (PyCFunction)Shared_release, METH_NOARGS, "release the buffer"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SharedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engine._ring.Shared",
    .tp_basicsize = sizeof(Shared),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Shared_init,
    .tp_dealloc = (destructor)Shared_dealloc,
    .tp_methods = Shared_methods,
};

/* ------------------------------------------------------------------------------------ */
/* WriterCore: append records into the ring, publish them with one commit               */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int held;
    char *records;
    uint64_t *tail;
    uint64_t *intent;
    uint32_t *futex_word;
    uint32_t *waiters;
    uint64_t capacity;
    uint64_t mask;
    uint64_t next;       /* seq of the next record appended */
    uint64_t published;  /* value of tail */
    uint64_t claimed;    /* value of intent */
    uint64_t claim;      /* slots claimed per intent store */
    uint8_t exchange;
} WriterCore;

static int
WriterCore_init(WriterCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "records_off", "capacity", "tail_off", "intent_off",
                             "futex_off", "waiters_off", "exchange", "next_seq", "claim", NULL};
    PyObject *obj;
    Py_ssize_t records_off, tail_off, intent_off, futex_off, waiters_off;
    unsigned long long capacity, next_seq, claim;
    int exchange;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnKnnnniKK", kwlist, &obj, &records_off,
                                     &capacity, &tail_off, &intent_off, &futex_off,
                                     &waiters_off, &exchange, &next_seq, &claim))
        return -1;
    if (capacity == 0 || (capacity & (capacity - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be a power of two");
        return -1;
    }
    if (claim == 0 || claim > capacity) {
        PyErr_SetString(PyExc_ValueError, "claim must be in 1..capacity");
        return -1;
    }
    if (PyObject_GetBuffer(obj, &self->view, PyBUF_WRITABLE) < 0)
        return -1;
    self->held = 1;
    if (check_offset(&self->view, tail_off, 8) < 0 ||
        check_offset(&self->view, intent_off, 8) < 0 ||
        check_offset(&self->view, futex_off, 4) < 0 ||
        check_offset(&self->view, waiters_off, 4) < 0 ||
        records_off < 0 || records_off % RECORD_SIZE != 0 ||
        (unsigned long long)records_off + capacity * RECORD_SIZE >
            (unsigned long long)self->view.len) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "records do not fit the buffer");
        PyBuffer_Release(&self->view);
        self->held = 0;
        return -1;
    }
    char *base = (char *)self->view.buf;
    self->records = base + records_off;
    self->tail = (uint64_t *)(base + tail_off);
    self->intent = (uint64_t *)(base + intent_off);
    self->futex_word = (uint32_t *)(base + futex_off);
    self->waiters = (uint32_t *)(base + waiters_off);
    self->capacity = capacity;
    self->mask = capacity - 1;
    self->next = next_seq;
    self->published = next_seq;
    self->claim = claim;
    self->exchange = (uint8_t)exchange;
    /* A writer that died mid-batch may have claimed slots past the tail: keep that claim
     * (the slots may be torn) until the new writer has rewritten them. */
    uint64_t claimed = __atomic_load_n(self->intent, __ATOMIC_ACQUIRE);
    self->claimed = claimed > next_seq ? claimed : next_seq;
    __atomic_store_n(self->intent, self->claimed, __ATOMIC_RELAXED);
    __atomic_store_n(self->tail, next_seq, __ATOMIC_RELEASE);
    return 0;
}

static void
WriterCore_dealloc(WriterCore *self)
{
    if (self->held)
        PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define WRITER_CHECK(self)                                                  \
    if (!(self)->held) {                                                    \
        PyErr_SetString(PyExc_ValueError, "ring writer closed");            \
        return NULL;                                                        \
    }

/* Slot for the next record; announces the overwrite first (intent), ahead by `claim` slots. */
static inline char *
claim_slot(WriterCore *self)
{
    uint64_t seq = self->next;
    if (seq >= self->claimed) {
        self->claimed = seq + self->claim;
        __atomic_store_n(self->intent, self->claimed, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
    return self->records + (seq & self->mask) * RECORD_SIZE;
}

struct head {
    uint64_t seq;
    uint8_t kind, exchange, side, flags;
    uint32_t symbol;
    int64_t exch_ts, recv_ts;
    double price, size;
};

struct tail_ints {
    uint64_t ref;
    uint32_t aux, extra;
};

struct tail_floats {
    double ask_price, ask_size;
};

_Static_assert(sizeof(struct head) == 48, "head layout");

static int
as_u64(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int
as_i64(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int
as_u32(PyObject *o, uint32_t *out)
{
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit in 32 bits");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int
as_u8(PyObject *o, uint8_t *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > 255) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit in 8 bits");
        return -1;
    }
    *out = (uint8_t)v;
    return 0;
}

static int
as_f64(PyObject *o, double *out)
{
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* kind, side, flags, symbol, exch_ts, recv_ts, price, size: args[0..7] */
static int
parse_head(WriterCore *self, PyObject *const *args, struct head *h)
{
    h->seq = self->next;
    h->exchange = self->exchange;
    if (as_u8(args[0], &h->kind) < 0 || as_u8(args[1], &h->side) < 0 ||
        as_u8(args[2], &h->flags) < 0 || as_u32(args[3], &h->symbol) < 0 ||
        as_i64(args[4], &h->exch_ts) < 0 || as_i64(args[5], &h->recv_ts) < 0 ||
        as_f64(args[6], &h->price) < 0 || as_f64(args[7], &h->size) < 0)
        return -1;
    return 0;
}

/* append(kind, side, flags, symbol, exch_ts, recv_ts, price, size, ref, aux, extra=0) */
static PyObject *
WriterCore_append(WriterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    WRITER_CHECK(self);
    if (nargs != 10 && nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "append(kind, side, flags, symbol, exch_ts, recv_ts, price, size, ref, "
                        "aux, extra=0)");
        return NULL;
    }
    struct head h;
    struct tail_ints t;
    t.extra = 0;
    if (parse_head(self, args, &h) < 0 || as_u64(args[8], &t.ref) < 0 ||
        as_u32(args[9], &t.aux) < 0 || (nargs == 11 && as_u32(args[10], &t.extra) < 0))
        return NULL;
    char *slot = claim_slot(self);
    memcpy(slot, &h, sizeof h);
    memcpy(slot + sizeof h, &t, sizeof t);
    self->next++;
    Py_RETURN_NONE;
}

/* append_bbo(flags, symbol, exch_ts, recv_ts, bid_price, bid_size, ask_price, ask_size) */
static PyObject *
WriterCore_append_bbo(WriterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    WRITER_CHECK(self);
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "append_bbo(flags, symbol, exch_ts, recv_ts, bid_price, bid_size, "
                        "ask_price, ask_size)");
        return NULL;
    }
    struct head h;
    struct tail_floats t;
    h.seq = self->next;
    h.kind = 2; /* Kind.BBO */
    h.exchange = self->exchange;
    h.side = 0;
    if (as_u8(args[0], &h.flags) < 0 || as_u32(args[1], &h.symbol) < 0 ||
        as_i64(args[2], &h.exch_ts) < 0 || as_i64(args[3], &h.recv_ts) < 0 ||
        as_f64(args[4], &h.price) < 0 || as_f64(args[5], &h.size) < 0 ||
        as_f64(args[6], &t.ask_price) < 0 || as_f64(args[7], &t.ask_size) < 0)
        return NULL;
    char *slot = claim_slot(self);
    memcpy(slot, &h, sizeof h);
    memcpy(slot + sizeof h, &t, sizeof t);
    self->next++;
    Py_RETURN_NONE;
}

/* append_raw(buffer): records packed back to back; seq and exchange are overwritten. */
static PyObject *
WriterCore_append_raw(WriterCore *self, PyObject *arg)
{
    WRITER_CHECK(self);
    Py_buffer src;
    if (PyObject_GetBuffer(arg, &src, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (src.len % RECORD_SIZE != 0) {
        PyBuffer_Release(&src);
        PyErr_SetString(PyExc_ValueError, "buffer length is not a multiple of 64");
        return NULL;
    }
    uint64_t n = (uint64_t)(src.len / RECORD_SIZE);
    const char *in = (const char *)src.buf;
    while (n > 0) {
        /* claim up to the end of the ring or `n`, whichever is first, in one intent store */
        uint64_t slot = self->next & self->mask;
        uint64_t run = self->capacity - slot;
        if (run > n)
            run = n;
        if (self->next + run > self->claimed) {
            self->claimed = self->next + run;
            __atomic_store_n(self->intent, self->claimed, __ATOMIC_RELAXED);
            __atomic_thread_fence(__ATOMIC_RELEASE);
        }
        char *dst = self->records + slot * RECORD_SIZE;
        memcpy(dst, in, run * RECORD_SIZE);
        for (uint64_t i = 0; i < run; i++) {
            char *rec = dst + i * RECORD_SIZE;
            uint64_t seq = self->next + i;
            memcpy(rec, &seq, 8);
            rec[9] = (char)self->exchange;
        }
        self->next += run;
        in += run * RECORD_SIZE;
        n -= run;
    }
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

static inline void
publish(WriterCore *self)
{
    if (self->next != self->published) {
        self->published = self->next;
        __atomic_store_n(self->tail, self->next, __ATOMIC_RELEASE);
        if (self->claimed > self->next) {
            /* give back the unused claim so that readers see the exact oldest valid seq */
            self->claimed = self->next;
            __atomic_store_n(self->intent, self->next, __ATOMIC_RELAXED);
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(self->waiters, __ATOMIC_RELAXED) != 0)
            wake_all(self->futex_word);
    }
}

static PyObject *
WriterCore_commit(WriterCore *self, PyObject *Py_UNUSED(ignored))
{
    WRITER_CHECK(self);
    publish(self);
    return PyLong_FromUnsignedLongLong(self->next);
}

/* write(...): append + commit of one record */
static PyObject *
WriterCore_write(WriterCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r = WriterCore_append(self, args, nargs);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    publish(self);
    Py_RETURN_NONE;
}

static PyObject *
WriterCore_release(WriterCore *self, PyObject *Py_UNUSED(ignored))
{
    if (self->held) {
        PyBuffer_Release(&self->view);
        self->held = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *
WriterCore_get_next(WriterCore *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->next);
}

static PyObject *
WriterCore_get_claimed(WriterCore *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->claimed);
}

static PyObject *
WriterCore_get_pending(WriterCore *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->next - self->published);
}

static PyMethodDef WriterCore_methods[] = {
    {"append", (PyCFunction)(void (*)(void))WriterCore_append, METH_FASTCALL,
     "append one record (published by the next commit)"},
    {"append_bbo", (PyCFunction)(void (*)(void))WriterCore_append_bbo, METH_FASTCALL,
     "append one best bid/offer record"},
    {"append_raw", (PyCFunction)WriterCore_append_raw, METH_O,
     "append packed records; their seq and exchange fields are assigned"},
    {"commit", (PyCFunction)WriterCore_commit, METH_NOARGS,
     "publish every appended record; returns the new tail"},
    {"write", (PyCFunction)(void (*)(void))WriterCore_write, METH_FASTCALL,
     "append and commit one record"},
    {"release", (PyCFunction)WriterCore_release, METH_NOARGS, "release the buffer"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef WriterCore_getset[] = {
    {"next", (getter)WriterCore_get_next, NULL, "seq of the next record", NULL},
    {"pending", (getter)WriterCore_get_pending, NULL, "records appended, not committed", NULL},
    {"claimed", (getter)WriterCore_get_claimed, NULL, "seqs announced as being written", NULL},
    {NULL},
};

static PyTypeObject WriterCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "engine._ring.WriterCore",
    .tp_basicsize = sizeof(WriterCore),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)WriterCore_init,
    .tp_dealloc = (destructor)WriterCore_dealloc,
    .tp_methods = WriterCore_methods,
    .tp_getset = WriterCore_getset,
};

static struct PyModuleDef ringmodule = {
    PyModuleDef_HEAD_INIT, "_ring", "Ordered shared-memory operations for the WSM ring.", -1,
    NULL,
};

PyMODINIT_FUNC
PyInit__ring(void)
{
    if (PyType_Ready(&SharedType) < 0 || PyType_Ready(&WriterCoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ringmodule);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SharedType);
    Py_INCREF(&WriterCoreType);
    if (PyModule_AddObject(m, "Shared", (PyObject *)&SharedType) < 0 ||
        PyModule_AddObject(m, "WriterCore", (PyObject *)&WriterCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddStringConstant(m, "BACKEND", "c");
    return m;
}
