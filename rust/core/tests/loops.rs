//! Every row of the spec's §6.4 table, on synthetic streams shaped like the Python emitter's.

// Synthetic graphs read best with the one-letter names of the model code they mimic.
#![allow(clippy::many_single_char_names)]

mod common;

use common::{Stream, pos_of};

const ADD_ONE: u64 = 0xA1;
const MUL_TWO: u64 = 0xB2;
const MUL_THREE: u64 = 0xB3;
const SHAPE: u64 = 0x5EED;

/// `for _ in range(n): x = fc(x); x = x + 1; x = x * 2`
fn simple_recurrent(n: usize) -> Stream {
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    for _ in 0..n {
        x = s.module("fc", |s| s.op_p("linear", &[0, 1], &[x]));
        x = s.op_h("__add__", ADD_ONE, &[x]);
        x = s.op_h("__mul__", MUL_TWO, &[x]);
    }
    s.output(x, "output", SHAPE);
    s
}

#[test]
fn recurrent_loop_gives_multi_pass_layers() {
    let fin = simple_recurrent(4).finalize();
    let expected: Vec<String> = std::iter::once("input_1".to_string())
        .chain((1..=4).flat_map(|p| {
            [
                format!("linear_1_1:{p}"),
                format!("add_1_2:{p}"),
                format!("mul_1_3:{p}"),
            ]
        }))
        .chain(std::iter::once("output_1".to_string()))
        .collect();
    assert_eq!(fin.labels(), expected);
    assert_eq!(fin.num_operations(), 12);
    // "Layer linear_1_1 (pass 2/4), operation 4/12"
    let pos = pos_of(&fin, "linear_1_1:2");
    assert_eq!(fin.operation_nums()[pos], 4);
    assert_eq!(fin.num_passes()[pos], 4);
    assert_eq!(
        fin.layer_total_nums()[fin.len() - 1],
        4,
        "outputs consume a total number"
    );
    assert_eq!(fin.operation_nums()[fin.len() - 1], 12);
    assert_eq!(fin.layer_groups(), &[0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 4]);
    assert_eq!(fin.labels_short()[pos], "linear_1:2");
    assert_eq!(fin.lookup("fc:2"), Some(pos as u32));
    assert_eq!(fin.lookup("fc"), None, "fc ran 4 times: no bare key");
}

#[test]
fn reduced_mode_only_merges_same_weights() {
    let fin = simple_recurrent(3).finalize_with(false);
    assert_eq!(
        fin.labels(),
        [
            "input_1",
            "linear_1_1:1",
            "add_1_2",
            "mul_1_3",
            "linear_1_1:2",
            "add_2_4",
            "mul_2_5",
            "linear_1_1:3",
            "add_3_6",
            "mul_3_7",
            "output_1"
        ]
    );
}

#[test]
fn block_called_twice() {
    // block = Linear + functional relu inside the block's forward.
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    for _ in 0..2 {
        x = s.module("block", |s| {
            let l = s.module("block.fc", |s| s.op_p("linear", &[0, 1], &[x]));
            s.op("relu", &[l])
        });
    }
    s.output(x, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        fin.labels(),
        [
            "input_1",
            "linear_1_1:1",
            "relu_1_2:1",
            "linear_1_1:2",
            "relu_1_2:2",
            "output_1"
        ]
    );
    assert_eq!(fin.lookup("block:1"), Some(2));
    assert_eq!(fin.lookup("block:2"), Some(4));
    assert_eq!(fin.lookup("block.fc:2"), Some(3));
    assert_eq!(fin.lookup("block"), None);
}

#[test]
fn same_linear_at_unrelated_places_is_one_layer() {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let a = s.module("fc", |s| s.op_p("linear", &[0, 1], &[x]));
    let b = s.op("sin", &[a]);
    let c = s.op("exp", &[b]);
    let d = s.op("tanh", &[c]);
    let e = s.module("fc", |s| s.op_p("linear", &[1, 0], &[d]));
    s.output(e, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        fin.labels(),
        [
            "input_1",
            "linear_1_1:1",
            "sin_1_2",
            "exp_1_3",
            "tanh_1_4",
            "linear_1_1:2",
            "output_1"
        ]
    );
}

#[test]
fn adjacent_chain_without_loop_in_code() {
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    for _ in 0..3 {
        x = s.op("sin", &[x]);
    }
    s.output(x, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        fin.labels(),
        ["input_1", "sin_1_1:1", "sin_1_1:2", "sin_1_1:3", "output_1"]
    );
}

#[test]
fn two_loops_separated_by_an_add_stay_separate() {
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    for _ in 0..3 {
        x = s.op("sin", &[x]);
        x = s.op("cos", &[x]);
    }
    x = s.op_h("__add__", ADD_ONE, &[x]);
    for _ in 0..3 {
        x = s.op("sin", &[x]);
        x = s.op("cos", &[x]);
    }
    s.output(x, "output", SHAPE);
    let fin = s.finalize();
    let labels = fin.labels();
    assert_eq!(
        &labels[1..7],
        [
            "sin_1_1:1",
            "cos_1_2:1",
            "sin_1_1:2",
            "cos_1_2:2",
            "sin_1_1:3",
            "cos_1_2:3"
        ]
    );
    assert_eq!(labels[7], "add_1_3");
    assert_eq!(
        &labels[8..14],
        [
            "sin_2_4:1",
            "cos_2_5:1",
            "sin_2_4:2",
            "cos_2_5:2",
            "sin_2_4:3",
            "cos_2_5:3"
        ]
    );
    assert_eq!(labels[14], "output_1");
}

#[test]
fn same_op_with_different_args_or_not_adjacent() {
    // x*2; x*3; x*2, each applied to the previous result.
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let a = s.op_h("__mul__", MUL_TWO, &[x]);
    let b = s.op_h("__mul__", MUL_THREE, &[a]);
    let c = s.op_h("__mul__", MUL_TWO, &[b]);
    s.output(c, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(fin.labels(), ["input_1", "mul_1_1", "mul_2_2", "mul_3_3", "output_1"]);
}

#[test]
fn functional_relu_separated_by_parameter_ops() {
    // relu(l2(relu(l1(x))))
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let a = s.module("l1", |s| s.op_p("linear", &[0, 1], &[x]));
    let b = s.op("relu", &[a]);
    let c = s.module("l2", |s| s.op_p("linear", &[2, 3], &[b]));
    let d = s.op("relu", &[c]);
    s.output(d, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        fin.labels(),
        [
            "input_1",
            "linear_1_1",
            "relu_1_2",
            "linear_2_3",
            "relu_2_4",
            "output_1"
        ]
    );
    assert_eq!(fin.lookup("l2"), Some(3));
}

#[test]
fn parallel_branches_are_separate_layers() {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let a = s.op("sin", &[x]);
    let b = s.op("sin", &[x]);
    let c = s.op("__add__", &[a, b]);
    s.output(c, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(fin.labels(), ["input_1", "sin_1_1", "sin_2_2", "add_1_3", "output_1"]);

    // Different branch shapes: sin(x) and sin(exp(x)), joined by cat.
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let a = s.op("sin", &[x]);
    let e = s.op("exp", &[x]);
    let b = s.op("sin", &[e]);
    let c = s.op("cat", &[a, b]);
    s.output(c, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        fin.labels(),
        ["input_1", "sin_1_1", "exp_1_2", "sin_2_3", "cat_1_4", "output_1"]
    );
}

#[test]
fn nested_param_free_loops_form_one_layer() {
    // for i in range(4): x = x * 2; for j in range(3): x = sin(x)
    // The sins' neighbours depend on their inner level (mul parent, sin, mul child); the mul
    // round first groups them per level, the sin round then merges the levels.
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    for _ in 0..4 {
        x = s.op_h("__mul__", MUL_TWO, &[x]);
        for _ in 0..3 {
            x = s.op("sin", &[x]);
        }
    }
    s.output(x, "output", SHAPE);
    let fin = s.finalize();
    let labels = fin.labels();
    assert_eq!(&labels[1..5], ["mul_1_1:1", "sin_1_2:1", "sin_1_2:2", "sin_1_2:3"]);
    assert_eq!(labels[16], "sin_1_2:12");
    assert_eq!(fin.num_passes()[2], 12);
    assert_eq!(fin.num_passes()[1], 4);
    assert_eq!(fin.num_layers(), 4);

    // Inner loop first: for i in range(4): (for j in range(3): x = sin(x)); x = x * 2
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    for _ in 0..4 {
        for _ in 0..3 {
            x = s.op("sin", &[x]);
        }
        x = s.op_h("__mul__", MUL_TWO, &[x]);
    }
    s.output(x, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        &fin.labels()[1..6],
        ["sin_1_1:1", "sin_1_1:2", "sin_1_1:3", "mul_1_2:1", "sin_1_1:4"]
    );
    assert_eq!(fin.num_passes()[1], 12);
}

#[test]
fn identical_inputs_feeding_a_chain_do_not_crash() {
    let mut s = Stream::new();
    let a = s.input("input.a", SHAPE);
    let b = s.input("input.b", SHAPE);
    let c = s.input("input.c", SHAPE);
    let mut x = s.op("__add__", &[a, b]);
    x = s.op("__add__", &[x, c]);
    s.output(x, "output", SHAPE);
    let fin = s.finalize();
    assert_eq!(fin.len(), 6);
    assert_eq!(fin.lookup("input.c"), Some(2));
}

/// Two dropout + residual blocks joined by `mid` (BART's encoder layer): `h = mid(x + drop(l1(x)));
/// out = h + drop(l2(h))`, `mid` a layer norm (parameters) or `exp`.
fn residual_pair(mid_has_params: bool) -> Vec<String> {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let l1 = s.op_p("linear", &[0, 1], &[x]);
    let d1 = s.op_h("dropout", 0xD0, &[l1]);
    let a1 = s.op("__add__", &[x, d1]);
    let h = if mid_has_params {
        s.op_p("layer_norm", &[2, 3], &[a1])
    } else {
        s.op("exp", &[a1])
    };
    let l2 = s.op_p("linear", &[4, 5], &[h]);
    let d2 = s.op_h("dropout", 0xD0, &[l2]);
    let a2 = s.op("__add__", &[h, d2]);
    s.output(a2, "output", SHAPE);
    s.finalize().labels()
}

#[test]
fn a_parameterised_node_between_two_blocks_links_them() {
    // Checked against TorchLens 2.15.0: the layer norm is a neighbour of both subgraphs (child of
    // the first add, parent of the second) and uses parameters, so the blocks are passes.
    assert_eq!(
        residual_pair(true),
        [
            "input_1",
            "linear_1_1",
            "dropout_1_2:1",
            "add_1_3:1",
            "layernorm_1_4",
            "linear_2_5",
            "dropout_1_2:2",
            "add_1_3:2",
            "output_1"
        ]
    );
    // A parameter-free op in its place, with nothing like it further along, does not link them.
    assert_eq!(
        residual_pair(false),
        [
            "input_1",
            "linear_1_1",
            "dropout_1_2",
            "add_1_3",
            "exp_1_4",
            "linear_2_5",
            "dropout_2_6",
            "add_2_7",
            "output_1"
        ]
    );
}

#[test]
fn a_shared_neighbour_with_a_twin_links_but_stays_out_of_the_group() {
    // `h = x * 2; for _ in range(2): h = exp(sin(h) + h)` (2.15.0: the sins and adds are passes,
    // the two exps stay separate layers).
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let mut h = s.op_h("__mul__", MUL_TWO, &[x]);
    for _ in 0..2 {
        let sn = s.op("sin", &[h]);
        let a = s.op("__add__", &[sn, h]);
        h = s.op("exp", &[a]);
    }
    s.output(h, "output", SHAPE);
    assert_eq!(
        s.finalize().labels(),
        [
            "input_1",
            "mul_1_1",
            "sin_1_2:1",
            "add_1_3:1",
            "exp_1_4",
            "sin_1_2:2",
            "add_1_3:2",
            "exp_2_5",
            "output_1"
        ]
    );
}

#[test]
fn the_tensors_of_one_parameter_call_are_passes_of_one_layer() {
    // An LSTM's output, h and c (out_index 0, 1, 2) share function and parameters (2.15.0).
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let o = s.op_full("lstm", 0, 0, &[0, 1], &[x]);
    let hh = s.op_full("lstm", 0, 1, &[0, 1], &[x]);
    let c = s.op_full("lstm", 0, 2, &[0, 1], &[x]);
    let a = s.op("__add__", &[o, hh]);
    let b = s.op("__mul__", &[a, c]);
    s.output(b, "output", SHAPE);
    assert_eq!(
        s.finalize().labels(),
        [
            "input_1",
            "lstm_1_1:1",
            "lstm_1_1:2",
            "lstm_1_1:3",
            "add_1_2",
            "mul_1_3",
            "output_1"
        ]
    );
}
