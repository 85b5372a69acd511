/* The common case of libs/telemetry/spanwire.py's SpanEncoder._span, compiled.
 *
 * Under load the gateway spent 13-19 us of its event loop's CPU on each span in Python
 * (some 3 % of a Predict call at concurrency 8, two spans a call); this does the same work
 * in about a microsecond. It handles exactly the spans whose remembered "tail" (name,
 * kind, attributes, status, flags) the Python encoder already has, with no events, links
 * or trace state, and returns None for every other span: the Python code then encodes it
 * (and remembers its tail, so the next span of that kind comes here). The key it looks the
 * tail up with is built exactly as SpanEncoder._tail builds it; the unit tests run every
 * span through both and compare with the SDK's own encoder.
 *
 * Reads the SDK's private fields (_context, _parent, _start_time, ...) as the Python code
 * does; a version that renames one makes this return None, not a wrong encoding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *s_events, *s_links, *s_dropped, *s_context, *s_parent, *s_start, *s_end,
    *s_attributes, *s_dict, *s_dq, *s_status, *s_status_code, *s_description, *s_name, *s_kind;

/* A new reference to obj.name, or NULL with no error set when it has none. */
static PyObject *attr(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) PyErr_Clear();
    return value;
}

/* 1 when events/links hold nothing and dropped nothing, 0 when they do, -1 on error. */
static int empty(PyObject *seq) {
    int full;
    /* The SDK's BoundedList keeps its items in a deque, `_dq`: its length without the
     * Python-level __len__ (a tenth of this function's time). */
    PyObject *items = attr(seq, s_dq);
    if (items != NULL) {
        Py_ssize_t n = PyObject_Length(items);
        Py_DECREF(items);
        full = n < 0 ? -1 : n > 0;
    } else if (PyErr_Occurred()) {
        return -1;
    } else {
        full = PyObject_IsTrue(seq);
    }
    if (full != 0) return full < 0 ? -1 : 0;
    PyObject *dropped = attr(seq, s_dropped);
    if (dropped == NULL) return PyErr_Occurred() ? -1 : 1;
    int some = PyObject_IsTrue(dropped);
    Py_DECREF(dropped);
    return some < 0 ? -1 : !some;
}

static unsigned char *put64be(unsigned char *out, uint64_t v) {
    for (int i = 7; i >= 0; i--) { out[i] = (unsigned char)(v & 0xff); v >>= 8; }
    return out + 8;
}

static unsigned char *put64le(unsigned char *out, uint64_t v) {
    for (int i = 0; i < 8; i++) { out[i] = (unsigned char)(v & 0xff); v >>= 8; }
    return out + 8;
}

/* Reads an unsigned 64-bit int; 0 when it is not one (no error left set). */
static int u64(PyObject *v, uint64_t *out) {
    if (!PyLong_Check(v)) return 0;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    *out = (uint64_t)x;
    return 1;
}

/* An unsigned int below 2**128 as 16 big-endian bytes; 0 when it is not one (no error). */
static int u128(PyObject *v, unsigned char out[16]) {
    if (!PyLong_Check(v) || _PyLong_Sign(v) < 0) return 0;
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t need = PyLong_AsNativeBytes(v, out, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
    if (need < 0) { PyErr_Clear(); return 0; }
    return need <= 16;
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, out, 16, 0, 0) < 0) { PyErr_Clear(); return 0; }
    return 1;
#endif
}

/* span_field(span, tails) -> bytes | None: the span as a ScopeSpans `spans` field. */
static PyObject *span_field(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "span_field(span, tails: dict)");
        return NULL;
    }
    PyObject *span = args[0], *tails = args[1];
    PyObject *events = NULL, *links = NULL, *ctx = NULL, *parent = NULL, *start = NULL,
             *end = NULL, *attributes = NULL, *items = NULL, *status = NULL, *code = NULL,
             *description = NULL, *name = NULL, *kind = NULL, *dropped = NULL, *keys = NULL,
             *values = NULL, *types = NULL, *key = NULL, *result = NULL;
    unsigned char trace_bytes[16];
    uint64_t span_id, parent_id = 0, t_start, t_end;
    int remote = 0;

    if ((events = attr(span, s_events)) == NULL || (links = attr(span, s_links)) == NULL) goto fallback;
    if (events == Py_None || links == Py_None) goto fallback;
    if (empty(events) != 1 || empty(links) != 1) goto fallback;

    if ((ctx = attr(span, s_context)) == NULL || !PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) < 5) goto fallback;
    if (PyObject_IsTrue(PyTuple_GET_ITEM(ctx, 4)) != 0) goto fallback; /* trace state */
    PyObject *trace_id = PyTuple_GET_ITEM(ctx, 0);
    if (!PyLong_Check(trace_id) || !u64(PyTuple_GET_ITEM(ctx, 1), &span_id)) goto fallback;
    if (!u128(trace_id, trace_bytes)) goto fallback;

    if ((parent = attr(span, s_parent)) == NULL) goto fallback;
    if (parent != Py_None) {
        if (!PyTuple_Check(parent) || PyTuple_GET_SIZE(parent) < 3 ||
            !u64(PyTuple_GET_ITEM(parent, 1), &parent_id))
            goto fallback;
        if ((remote = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 2))) < 0) goto error;
    }
    if ((start = attr(span, s_start)) == NULL || !u64(start, &t_start)) goto fallback;
    if ((end = attr(span, s_end)) == NULL || !u64(end, &t_end)) goto fallback;

    /* The tail's key, as SpanEncoder._tail makes it. */
    if ((attributes = attr(span, s_attributes)) == NULL) goto fallback;
    if ((items = attr(attributes, s_dict)) == NULL || !PyDict_Check(items)) goto fallback;
    Py_ssize_t n = PyDict_GET_SIZE(items), pos = 0, i = 0;
    PyObject *k, *v;
    if ((keys = PyTuple_New(n)) == NULL || (values = PyTuple_New(n)) == NULL || (types = PyTuple_New(n)) == NULL)
        goto error;
    while (PyDict_Next(items, &pos, &k, &v)) {
        if (i >= n) goto fallback; /* changed under us */
        if (PyTuple_Check(v) || PyList_Check(v)) goto fallback; /* not remembered */
        Py_INCREF(k); PyTuple_SET_ITEM(keys, i, k);
        Py_INCREF(v); PyTuple_SET_ITEM(values, i, v);
        Py_INCREF(Py_TYPE(v)); PyTuple_SET_ITEM(types, i, (PyObject *)Py_TYPE(v));
        i++;
    }
    if (i != n) goto fallback;
    if ((status = attr(span, s_status)) == NULL) goto fallback;
    if ((code = attr(status, s_status_code)) == NULL || (description = attr(status, s_description)) == NULL)
        goto fallback;
    if ((name = attr(span, s_name)) == NULL || (kind = attr(span, s_kind)) == NULL) goto fallback;
    if ((dropped = attr(attributes, s_dropped)) == NULL) {
        if (PyErr_Occurred()) goto error;
        dropped = PyLong_FromLong(0);
    }
    /* (name, id(kind), id(status code), description, remote parent, dropped, keys, values,
     * types), filled in place: Py_BuildValue's format parsing took a fifth of the time. */
    if ((key = PyTuple_New(9)) == NULL) goto error;
    PyObject *kind_id = PyLong_FromVoidPtr(kind), *code_id = PyLong_FromVoidPtr(code);
    if (kind_id == NULL || code_id == NULL) { Py_XDECREF(kind_id); Py_XDECREF(code_id); goto error; }
    PyObject *fields[9] = {name, kind_id, code_id, description, remote ? Py_True : Py_False, dropped, keys, values, types};
    for (int f = 0; f < 9; f++) {
        if (f != 1 && f != 2) Py_INCREF(fields[f]); /* the ids' references go to the tuple */
        PyTuple_SET_ITEM(key, f, fields[f]);
    }
    PyObject *tail = PyDict_GetItemWithError(tails, key); /* borrowed; an unhashable value: error */
    if (tail == NULL || !PyBytes_Check(tail)) goto fallback;

    /* Span: trace id, span id, [parent id], start, end, then the tail. */
    Py_ssize_t tail_size = PyBytes_GET_SIZE(tail);
    Py_ssize_t body = 2 + 16 + 2 + 8 + (parent != Py_None ? 2 + 8 : 0) + 9 + 9 + tail_size;
    unsigned char prefix[11];
    int plen = 0;
    prefix[plen++] = 0x12; /* ScopeSpans.spans: field 2, length-delimited */
    for (uint64_t len = (uint64_t)body;; len >>= 7) {
        if (len < 0x80) { prefix[plen++] = (unsigned char)len; break; }
        prefix[plen++] = (unsigned char)((len & 0x7f) | 0x80);
    }
    if ((result = PyBytes_FromStringAndSize(NULL, plen + body)) == NULL) goto error;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    memcpy(out, prefix, plen); out += plen;
    *out++ = 0x0a; *out++ = 0x10; memcpy(out, trace_bytes, 16); out += 16;
    *out++ = 0x12; *out++ = 0x08; out = put64be(out, span_id);
    if (parent != Py_None) { *out++ = 0x22; *out++ = 0x08; out = put64be(out, parent_id); }
    *out++ = 0x39; out = put64le(out, t_start);
    *out++ = 0x41; out = put64le(out, t_end);
    memcpy(out, PyBytes_AS_STRING(tail), tail_size);
    goto done;

fallback:
    /* Not this code's case, or an error reading the span: the Python encoder does the same
     * work again and meets (and raises) the same error, if there is one. */
    PyErr_Clear();
    result = Py_NewRef(Py_None);
    goto done;
error:
    Py_CLEAR(result);
done:
    Py_XDECREF(events); Py_XDECREF(links); Py_XDECREF(ctx); Py_XDECREF(parent);
    Py_XDECREF(start); Py_XDECREF(end); Py_XDECREF(attributes); Py_XDECREF(items);
    Py_XDECREF(status); Py_XDECREF(code); Py_XDECREF(description); Py_XDECREF(name);
    Py_XDECREF(kind); Py_XDECREF(dropped); Py_XDECREF(keys); Py_XDECREF(values);
    Py_XDECREF(types); Py_XDECREF(key);
    return result;
}

static PyMethodDef methods[] = {
    {"span_field", (PyCFunction)(void (*)(void))span_field, METH_FASTCALL,
     "span_field(span, tails) -> bytes | None: a finished SDK span as a ScopeSpans `spans`\n"
     "field when its tail is in `tails` (SpanEncoder's cache) and it has no events, links or\n"
     "trace state; None otherwise."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_spanwire", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__spanwire(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_events, "_events"); INTERN(s_links, "_links"); INTERN(s_dropped, "dropped");
    INTERN(s_context, "_context"); INTERN(s_parent, "_parent"); INTERN(s_start, "_start_time");
    INTERN(s_end, "_end_time"); INTERN(s_attributes, "_attributes"); INTERN(s_dict, "_dict"); INTERN(s_dq, "_dq");
    INTERN(s_status, "_status"); INTERN(s_status_code, "_status_code");
    INTERN(s_description, "_description"); INTERN(s_name, "_name"); INTERN(s_kind, "_kind");
#undef INTERN
    return PyModule_Create(&module);
}
