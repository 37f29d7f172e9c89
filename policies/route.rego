# METADATA
# title: sluice residency policy
# description: |
#   Decides whether one slice of data (input.data) may be processed on one
#   candidate executor (input.executor) for one pipeline (input.pipeline).
#   The rules live beside this file, one file per law; each adds to `deny`
#   or to `obligation`. This file only assembles the answer.
package sluice

# route is the document sluice reads (query data.sluice.route).
#
# Fail closed: allow is true only when no deny rule fires. A deny that errors
# aborts the evaluation (sluice evaluates with strict builtin errors), and an
# undefined or malformed route is a deny on the Go side.
route := {
	"allow": allow,
	"reasons": reasons,
	"obligations": obligations,
	"rules": rules,
}

default allow := false

allow if count(deny) == 0

# A deny entry is either {"msg": string, "rule": label} (what the shipped
# rules produce) or a plain string, as in Conftest.
reasons := sort({message(d) | some d in deny})

message(d) := d.msg if is_object(d)

message(d) := d if is_string(d)

obligations := {
	"mask": sort({o.column | some o in obligation; o.op == "mask"}),
	"drop": sort({o.column | some o in obligation; o.op == "drop"}),
	"hash": sort({o.column | some o in obligation; o.op == "hash"}),
}

# rules are the labels of every deny and obligation rule that fired.
rules := sort({d.rule | some d in deny; is_object(d); is_string(d.rule)} | {o.rule | some o in obligation})

# label is the custom.label annotation of the rule that calls it. Reading it
# with a default keeps a rule without a label firing (fail closed) instead of
# making it undefined.
label(meta) := object.get(meta, ["custom", "label"], "unlabelled rule")

# Attribute helpers shared by the rules.

residency := data.residency

data_jurisdiction := upper(trim_space(object.get(input, ["data", "jurisdiction"], "")))

executor_jurisdiction := upper(trim_space(object.get(input, ["executor", "jurisdiction"], "")))

data_classes := {c | some c in object.get(input, ["data", "classes"], [])}

executor_certifications := {c | some c in object.get(input, ["executor", "certifications"], [])}

executor_id := object.get(input, ["executor", "id"], "(unnamed executor)")

executor_kind := object.get(input, ["executor", "kind"], "")
