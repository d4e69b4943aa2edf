# schemas/openapi.yaml as the tests read it: parsed strictly (a key given twice is an error, as
# is anything that is not plain YAML), then printed as JSON, or written as JSON with examples.
# Usage: openapi.py json SPEC
#        openapi.py examples SPEC OUT.json STUDY SERIES INSTANCE PERSON
#   (the second gives the UID and person parameters those examples, so that every operation on
#   a study, series, instance or person is also tried on one that is stored)
import json
import sys

import yaml


class StrictLoader(yaml.SafeLoader):
    pass


def mapping(loader, node):
    loader.flatten_mapping(node)
    out = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)

command, path = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    spec = yaml.load(f, Loader=StrictLoader)
if command == "json":
    json.dump(spec, sys.stdout)
elif command == "examples":
    out, study, series, instance, person = sys.argv[3:8]
    params = spec["components"]["parameters"]
    for name, value in (
        ("study", study),
        ("series", series),
        ("instance", instance),
        ("person", person),
        ("frames", "1"),
    ):
        params[name]["example"] = value
    wado = {"requestType": "WADO", "studyUID": study, "seriesUID": series, "objectUID": instance}
    for param in spec["paths"]["/wado"]["get"]["parameters"]:
        if param["name"] in wado:
            param["example"] = wado[param["name"]]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(spec, f)
else:
    sys.exit(f"unknown command {command}")
