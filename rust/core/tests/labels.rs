//! Final labels, operation numbers and lookup keys (spec §5.3, §5.5, Appendix A.1/A.2).

// Synthetic graphs read best with the one-letter names of the model code they mimic.
#![allow(clippy::many_single_char_names)]

mod common;

use common::{Stream, pos_of};
use torchlens_core::LabelForm;

const SHAPE: u64 = 0x5EED;

/// `AlexNet` as torchvision lays it out; every parameterised module has its own weights.
fn alexnet() -> Stream {
    let mut s = Stream::new();
    let mut x = s.input("input.x", SHAPE);
    let mut next_param = 0u32;
    let mut param = |s: &mut Stream, func: &str, addr: &str, x: u32| {
        let p = [next_param, next_param + 1];
        next_param += 2;
        s.module(addr, |s| s.op_p(func, &p, &[x]))
    };
    s.enter("features");
    let layout = [
        "conv2d",
        "relu_",
        "max_pool2d",
        "conv2d",
        "relu_",
        "max_pool2d",
        "conv2d",
        "relu_",
        "conv2d",
        "relu_",
        "conv2d",
        "relu_",
        "max_pool2d",
    ];
    for (i, func) in layout.iter().enumerate() {
        let addr = format!("features.{i}");
        x = if *func == "conv2d" {
            param(&mut s, func, &addr, x)
        } else {
            // In-place relu and pooling hash the same way at every position of equal shape.
            s.module(&addr, |s| s.op_h(func, 11, &[x]))
        };
    }
    s.exit(x);
    x = s.module("avgpool", |s| s.op_h("adaptive_avg_pool2d", 12, &[x]));
    x = s.op_h("flatten", 13, &[x]);
    s.enter("classifier");
    for (i, func) in ["dropout", "linear", "relu_", "dropout", "linear", "relu_", "linear"]
        .iter()
        .enumerate()
    {
        let addr = format!("classifier.{i}");
        x = if *func == "linear" {
            param(&mut s, func, &addr, x)
        } else {
            s.module(&addr, |s| s.op_h(func, 14, &[x]))
        };
    }
    s.exit(x);
    s.output(x, "output", SHAPE);
    s
}

#[test]
fn alexnet_labels_match_appendix() {
    let fin = alexnet().finalize();
    let expected = [
        "input_1",
        "conv2d_1_1",
        "relu_1_2",
        "maxpool2d_1_3",
        "conv2d_2_4",
        "relu_2_5",
        "maxpool2d_2_6",
        "conv2d_3_7",
        "relu_3_8",
        "conv2d_4_9",
        "relu_4_10",
        "conv2d_5_11",
        "relu_5_12",
        "maxpool2d_3_13",
        "adaptiveavgpool2d_1_14",
        "flatten_1_15",
        "dropout_1_16",
        "linear_1_17",
        "relu_6_18",
        "dropout_2_19",
        "linear_2_20",
        "relu_7_21",
        "linear_3_22",
        "output_1",
    ];
    assert_eq!(fin.labels(), expected);
    assert_eq!(fin.num_operations(), 22);
    assert_eq!(fin.operation_nums()[7], 7);
    assert_eq!(fin.operation_nums()[0], 0);
    assert_eq!(fin.operation_nums()[23], 22);
    assert_eq!(fin.layer_total_nums()[0], 0);
    assert_eq!(fin.layer_type_nums()[7], 3);
    assert!(fin.num_passes().iter().all(|&p| p == 1));
    assert_eq!(fin.label_column(LabelForm::WithPass)[7], "conv2d_3_7:1");
    assert_eq!(fin.label_column(LabelForm::ShortWithPass)[7], "conv2d_3:1");
    assert_eq!(fin.labels_short()[0], "input_1");
    assert_eq!(fin.label_column(LabelForm::WithPass)[0], "input_1:1");
}

#[test]
fn alexnet_lookup_keys() {
    let fin = alexnet().finalize();
    let conv = pos_of(&fin, "conv2d_3_7");
    assert_eq!(
        fin.lookup_keys(conv).unwrap(),
        [
            "conv2d_3",
            "conv2d_3:1",
            "conv2d_3_7",
            "conv2d_3_7:1",
            "features.6",
            "features.6:1"
        ]
    );
    for key in ["conv2d_3", "conv2d_3_7:1", "features.6"] {
        assert_eq!(fin.lookup(key), Some(conv as u32), "{key}");
    }
    // `features.12` and `features` both exit at the last max-pool.
    let pool = pos_of(&fin, "maxpool2d_3_13");
    assert_eq!(fin.lookup("features"), Some(pool as u32));
    assert_eq!(fin.lookup("features.12:1"), Some(pool as u32));
    assert!(fin.lookup_keys(pool).unwrap().contains(&"features:1".to_string()));
    assert_eq!(fin.lookup("classifier"), Some(22));
    assert_eq!(fin.lookup("input.x"), Some(0));
    assert_eq!(fin.lookup("output"), Some(23));
    assert_eq!(fin.lookup_keys(0).unwrap(), ["input.x", "input_1", "input_1:1"]);
    // An output node copies the module passes its producer exits (spec §5.5: `head` is a key of
    // both the last linear and `output_1`; the first entry owns it).
    assert_eq!(
        fin.lookup_keys(23).unwrap(),
        [
            "classifier",
            "classifier.6",
            "classifier.6:1",
            "classifier:1",
            "output",
            "output_1",
            "output_1:1"
        ]
    );
    assert_eq!(fin.lookup("CONV2D_3_7"), None);
    assert_eq!(fin.lookup_ci("CONV2D_3_7"), Some(conv as u32));
    assert_eq!(fin.lookup_ci("Features.6"), Some(conv as u32));
    let found = fin.find_substring("conv2d_3");
    assert_eq!(
        found.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["conv2d_3", "conv2d_3:1", "conv2d_3_7", "conv2d_3_7:1"]
    );
    assert!(found.iter().all(|&(_, p)| p as usize == conv));
    assert_eq!(fin.find_substring_ci("CONV2D_3_7").len(), 2);
    assert!(fin.lookup_keys(fin.len()).is_err());
}

#[test]
fn first_entry_owns_a_colliding_key() {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let y = s.module("head", |s| s.op_p("linear", &[0], &[x]));
    s.output(y, "head", SHAPE);
    let fin = s.finalize();
    assert_eq!(fin.labels(), ["input_1", "linear_1_1", "output_1"]);
    assert_eq!(fin.lookup("head"), Some(1));
    assert!(fin.lookup_keys(2).unwrap().contains(&"head".to_string()));
}

#[test]
fn buffer_keys_and_numbers() {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let mut y = x;
    for _ in 0..2 {
        y = s.module("bn", |s| {
            let m = s.buffer("bn.running_mean");
            s.op_h("batch_norm", 3, &[y, m])
        });
    }
    let w = s.buffer("scale");
    y = s.op("__mul__", &[y, w]);
    s.output(y, "output", SHAPE);
    let fin = s.finalize();
    // The batch-norm module ran twice in a chain, so its buffer nodes are two passes of one
    // buffer layer, like every other fingerprint (§6.2).
    let labels = fin.labels();
    assert_eq!(labels[1], "buffer_1:1");
    assert_eq!(fin.layer_total_nums()[1], 0);
    assert_eq!(fin.operation_nums()[1], 0);
    let second = pos_of(&fin, "buffer_1:2");
    assert_eq!(fin.lookup_keys(second).unwrap(), ["bn.running_mean:2", "buffer_1:2"]);
    assert_eq!(fin.lookup("bn.running_mean"), None, "address has two buffer nodes");
    assert_eq!(fin.lookup("bn.running_mean:1"), Some(1));
    let scale = pos_of(&fin, "buffer_2");
    assert_eq!(
        fin.lookup_keys(scale).unwrap(),
        ["buffer_2", "buffer_2:1", "scale", "scale:1"]
    );
    assert_eq!(fin.lookup("scale"), Some(scale as u32));
    assert_eq!(fin.lookup("scale:1"), Some(scale as u32));
}

#[test]
fn multi_output_functions_get_one_layer_per_tensor() {
    let mut s = Stream::new();
    let x = s.input("input.x", SHAPE);
    let a = s.op_full("split", 5, 0, &[], &[x]);
    let b = s.op_full("split", 5, 1, &[], &[x]);
    let c = s.op("cat", &[a, b]);
    s.output(c, "output.0", SHAPE);
    s.output(a, "output.1", SHAPE);
    let fin = s.finalize();
    assert_eq!(
        fin.labels(),
        ["input_1", "split_1_1", "split_2_2", "cat_1_3", "output_1", "output_2"]
    );
    assert_eq!(fin.node_ids(), &[0, 1, 2, 3, 4, 5]);
    assert_eq!(fin.lookup("output.1"), Some(5));
    assert_eq!(fin.parents().get(5), &[1]);
    assert_eq!(fin.children().get(1), &[3, 5]);
    assert!(fin.fingerprints()[1].contains("_outindex0"));
}
