#!/usr/bin/python3
"""check_metadata.py — reads a .litertlm with code generated from the upstream schemas
(protoc for LiteRT-LM's runtime/proto/*.proto, flatc for its header schema; copies in
schemas/, provenance in schemas/PROVENANCE.md), independently of fieldlm's reader.

  /usr/bin/python3 check_metadata.py FILE.litertlm

Needs Debian's protobuf-compiler, flatbuffers-compiler, python3-protobuf and
python3-flatbuffers. Prints one JSON object: the system metadata, the sections, the
decoded LlmMetadata (start token, stop token ids, sampler, capacity, model type, the
template's sha256), the tokenizer's sha256 after inflating. Exits 1 on any parse error."""
import hashlib
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

here = os.path.dirname(os.path.abspath(__file__))
schemas = os.path.join(here, 'schemas')


def generate(tmp):
    proto_dir = os.path.join(tmp, 'runtime', 'proto')
    os.makedirs(proto_dir)
    for f in ('llm_metadata.proto', 'llm_model_type.proto', 'sampler_params.proto', 'token.proto'):
        shutil.copy(os.path.join(schemas, f), proto_dir)
    subprocess.run(['protoc', '-I', tmp, '--python_out', tmp] + [os.path.join(proto_dir, f) for f in os.listdir(proto_dir)], check=True)
    subprocess.run(['flatc', '--python', '-o', tmp, os.path.join(schemas, 'litertlm_header_schema_new.fbs')], check=True)
    for d in ('runtime', os.path.join('runtime', 'proto')):
        open(os.path.join(tmp, d, '__init__.py'), 'a').close()
    sys.path.insert(0, tmp)


def main():
    path = sys.argv[1]
    data = open(path, 'rb').read()
    assert data[:8] == b'LITERTLM', 'magic'
    major, minor, patch = struct.unpack_from('<III', data, 8)
    assert major == 1, 'major version'
    (hend,) = struct.unpack_from('<Q', data, 24)
    assert hend <= 16384, 'header over 16 KiB'
    tmp = tempfile.mkdtemp()
    try:
        generate(tmp)
        lm = importlib.import_module('runtime.proto.llm_metadata_pb2')
        hdr = importlib.import_module('litert.lm.schema.LiteRTLMMetaData')
        sv_mod = importlib.import_module('litert.lm.schema.StringValue')
        vdata = importlib.import_module('litert.lm.schema.VData')
    finally:
        pass
    root = hdr.LiteRTLMMetaData.GetRootAs(bytearray(data[32:hend]), 0)

    def kv_dict(get, n):
        out = {}
        for i in range(n):
            kv = get(i)
            key = kv.Key().decode()
            if kv.ValueType() == vdata.VData.StringValue:
                s = sv_mod.StringValue()
                t = kv.Value()
                s.Init(t.Bytes, t.Pos)
                out[key] = s.Value().decode()
            else:
                out[key] = f'<VData {kv.ValueType()}>'
        return out

    sysmeta = root.SystemMetadata()
    result = {'version': f'{major}.{minor}.{patch}', 'header_end': hend,
              'system_metadata': kv_dict(sysmeta.Entries, sysmeta.EntriesLength()), 'sections': []}
    secs = root.SectionMetadata()
    for i in range(secs.ObjectsLength()):
        o = secs.Objects(i)
        b, e, t = o.BeginOffset(), o.EndOffset(), o.DataType()
        assert b % 16384 == 0 and b <= e <= len(data), f'section {i} bounds'
        sec = {'type': t, 'begin': b, 'end': e, 'items': kv_dict(o.Items, o.ItemsLength())}
        payload = data[b:e]
        if t == 5:
            md = lm.LlmMetadata()
            md.ParseFromString(payload)
            sec['llm_metadata'] = {
                'start_token': md.HasField('start_token'),
                'stop_tokens': [list(s.token_ids.ids) for s in md.stop_tokens],
                'sampler': {'type': md.sampler_params.type, 'k': md.sampler_params.k, 'p': md.sampler_params.p,
                            'temperature': md.sampler_params.temperature} if md.HasField('sampler_params') else None,
                'max_num_tokens': md.max_num_tokens,
                'llm_model_type': md.llm_model_type.WhichOneof('model_type'),
                'jinja_sha256': hashlib.sha256(md.jinja_prompt_template.encode()).hexdigest()
                if md.HasField('jinja_prompt_template') else None,
            }
        elif t == 6:
            (n,) = struct.unpack_from('<Q', payload, 0)
            js = zlib.decompress(payload[8:])
            assert len(js) == n, 'tokenizer size'
            sec['tokenizer_sha256'] = hashlib.sha256(js).hexdigest()
        elif t == 3:
            assert payload[4:8] == b'TFL3', 'TFLite identifier'
        result['sections'].append(sec)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == '__main__':
    main()
