"""transformers models from small configs (two layers, width 32, random weights, CPU), registered
in `registry.REGISTRY`. Nothing is downloaded: every model is built from its config class."""

from __future__ import annotations

from collections.abc import Callable

import torch
import transformers as hf
from torch import nn

from .zoo import randn

Inputs = Callable[[], tuple[tuple, dict]]
Spec = tuple[Callable[[], nn.Module], Inputs]

VOCAB = 100
SEQ = 8

# The common small decoder/encoder shape, spelled with each config's own names below.
_TEXT = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
_DECODER = {**_TEXT, "intermediate_size": 64, "num_key_value_heads": 1, "max_position_embeddings": 64}


def _ids(seed: int = 1, length: int = SEQ) -> torch.Tensor:
    return torch.randint(1, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


def _text(**extra: object) -> Inputs:
    return lambda: ((_ids(),), dict(extra))


def _seq2seq() -> tuple[tuple, dict]:
    return (), {"input_ids": _ids(1), "decoder_input_ids": _ids(2, 6)}


def _pixels(size: int = 32, channels: int = 3) -> Inputs:
    return lambda: ((randn(1, channels, size, size, seed=1),), {})


def _model(cls: str, config: str, **cfg: object) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        return getattr(hf, cls)(getattr(hf, config)(**cfg))

    make.__name__ = cls
    return make


def decoders() -> dict[str, Spec]:
    """Causal language models (Llama family, GPT family, MoE, state-space)."""
    moe = {"num_local_experts": 4, "num_experts_per_tok": 2}
    qmoe = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
    gpt2 = {
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "vocab_size": VOCAB,
        "n_positions": 64,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }
    return {
        "hf_gpt2": (_model("GPT2Model", "GPT2Config", **gpt2), _text()),
        "hf_gpt2_lm": (_model("GPT2LMHeadModel", "GPT2Config", **gpt2), _text(use_cache=False)),
        "hf_llama": (_model("LlamaModel", "LlamaConfig", **_DECODER), _text()),
        "hf_llama_lm": (_model("LlamaForCausalLM", "LlamaConfig", **_DECODER), _text(use_cache=False)),
        "hf_mistral": (_model("MistralModel", "MistralConfig", **_DECODER), _text()),
        "hf_mixtral": (_model("MixtralModel", "MixtralConfig", **_DECODER, **moe), _text()),
        "hf_qwen2": (_model("Qwen2Model", "Qwen2Config", **_DECODER), _text()),
        "hf_qwen2_moe": (
            _model("Qwen2MoeModel", "Qwen2MoeConfig", **_DECODER, **qmoe, shared_expert_intermediate_size=32),
            _text(),
        ),
        "hf_qwen3": (_model("Qwen3Model", "Qwen3Config", **_DECODER, head_dim=16), _text()),
        "hf_qwen3_moe": (_model("Qwen3MoeModel", "Qwen3MoeConfig", **_DECODER, **qmoe, head_dim=16), _text()),
        "hf_gemma": (_model("GemmaModel", "GemmaConfig", **_DECODER, head_dim=16), _text()),
        "hf_gemma2": (_model("Gemma2Model", "Gemma2Config", **_DECODER, head_dim=16), _text()),
        "hf_phi": (_model("PhiModel", "PhiConfig", **_DECODER), _text()),
        "hf_phi3": (_model("Phi3Model", "Phi3Config", **_DECODER, pad_token_id=0), _text()),
        "hf_olmo": (_model("OlmoModel", "OlmoConfig", **_DECODER), _text()),
        "hf_stablelm": (_model("StableLmModel", "StableLmConfig", **_DECODER), _text()),
        "hf_starcoder2": (_model("Starcoder2Model", "Starcoder2Config", **_DECODER), _text()),
        "hf_granite": (_model("GraniteModel", "GraniteConfig", **_DECODER), _text()),
        "hf_falcon": (_model("FalconModel", "FalconConfig", **_TEXT), _text()),
        "hf_bloom": (
            _model("BloomModel", "BloomConfig", vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=2),
            _text(),
        ),
        "hf_opt": (
            _model("OPTModel", "OPTConfig", **_TEXT, ffn_dim=64, max_position_embeddings=64, word_embed_proj_dim=32),
            _text(),
        ),
        "hf_gpt_neo": (
            _model(
                "GPTNeoModel",
                "GPTNeoConfig",
                vocab_size=VOCAB,
                hidden_size=32,
                num_layers=2,
                num_heads=2,
                attention_types=[[["global", "local"], 1]],
                max_position_embeddings=64,
            ),
            _text(),
        ),
        "hf_gptj": (
            _model(
                "GPTJModel",
                "GPTJConfig",
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=2,
                n_head=2,
                rotary_dim=8,
                n_positions=64,
            ),
            _text(),
        ),
        "hf_codegen": (
            _model(
                "CodeGenModel",
                "CodeGenConfig",
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=2,
                n_head=2,
                rotary_dim=8,
                n_positions=64,
            ),
            _text(),
        ),
        "hf_gpt_bigcode": (_model("GPTBigCodeModel", "GPTBigCodeConfig", **gpt2), _text()),
        "hf_mamba": (
            _model("MambaModel", "MambaConfig", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, state_size=4),
            _text(),
        ),
        "hf_falcon_mamba": (
            _model(
                "FalconMambaModel",
                "FalconMambaConfig",
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=2,
                state_size=4,
            ),
            _text(),
        ),
        "hf_mamba2": (
            _model(
                "Mamba2Model",
                "Mamba2Config",
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=2,
                state_size=4,
                num_heads=4,
                head_dim=16,
                n_groups=1,
                chunk_size=4,
            ),
            _text(),
        ),
        "hf_rwkv": (
            _model("RwkvModel", "RwkvConfig", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, context_length=64),
            _text(),
        ),
    }


def encoders() -> dict[str, Spec]:
    """Bidirectional text encoders."""
    bert = {**_TEXT, "intermediate_size": 64, "max_position_embeddings": 64}
    return {
        "hf_bert": (_model("BertModel", "BertConfig", **bert), _text()),
        "hf_roberta": (_model("RobertaModel", "RobertaConfig", **bert), _text()),
        "hf_electra": (_model("ElectraModel", "ElectraConfig", **bert, embedding_size=32), _text()),
        "hf_albert": (_model("AlbertModel", "AlbertConfig", **bert, embedding_size=16), _text()),
        "hf_distilbert": (
            _model(
                "DistilBertModel", "DistilBertConfig", vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64
            ),
            _text(),
        ),
        "hf_deberta_v2": (_model("DebertaV2Model", "DebertaV2Config", **bert), _text()),
        "hf_mpnet": (_model("MPNetModel", "MPNetConfig", **bert), _text()),
        "hf_funnel": (
            _model(
                "FunnelModel",
                "FunnelConfig",
                vocab_size=VOCAB,
                d_model=32,
                n_head=2,
                d_head=16,
                d_inner=64,
                block_sizes=[1, 1],
            ),
            _text(),
        ),
        "hf_squeezebert": (_model("SqueezeBertModel", "SqueezeBertConfig", **bert, embedding_size=32), _text()),
        "hf_canine": (
            _model(
                "CanineModel",
                "CanineConfig",
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                num_hash_buckets=64,
                max_position_embeddings=64,
            ),
            _text(),
        ),
        "hf_xlnet": (
            _model("XLNetModel", "XLNetConfig", vocab_size=VOCAB, d_model=32, n_layer=2, n_head=2, d_inner=64),
            _text(),
        ),
    }


def seq2seq() -> dict[str, Spec]:
    """Encoder-decoders (relative-position buckets in T5, learned positions in BART, audio in Whisper)."""
    t5 = {"vocab_size": VOCAB, "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2}
    bart = {
        "vocab_size": VOCAB,
        "d_model": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 64,
    }

    def whisper_in() -> tuple[tuple, dict]:
        return (), {"input_features": randn(1, 16, 32, seed=1), "decoder_input_ids": _ids(2, 4)}

    whisper = {**bart, "num_mel_bins": 16, "max_source_positions": 16, "max_target_positions": 32, "pad_token_id": 0}
    return {
        "hf_t5": (_model("T5Model", "T5Config", **t5), _seq2seq),
        "hf_t5_gated": (_model("T5Model", "T5Config", **t5, feed_forward_proj="gated-gelu"), _seq2seq),
        "hf_t5_encoder": (_model("T5EncoderModel", "T5Config", **t5), _text()),
        "hf_mt5": (_model("MT5Model", "MT5Config", **t5), _seq2seq),
        "hf_bart": (_model("BartModel", "BartConfig", **bart), _seq2seq),
        "hf_pegasus": (_model("PegasusModel", "PegasusConfig", **bart), _seq2seq),
        "hf_marian": (
            _model(
                "MarianModel",
                "MarianConfig",
                **bart,
                decoder_vocab_size=VOCAB,
                pad_token_id=0,
                decoder_start_token_id=0,
            ),
            _seq2seq,
        ),
        "hf_blenderbot": (_model("BlenderbotModel", "BlenderbotConfig", **bart), _seq2seq),
        "hf_whisper": (_model("WhisperModel", "WhisperConfig", **whisper), whisper_in),
    }


def vision() -> dict[str, Spec]:
    vit = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    clip_text = {**_TEXT, "intermediate_size": 64, "max_position_embeddings": 16}
    clip_vision = {**vit}

    def clip() -> nn.Module:
        cfg = hf.CLIPConfig(text_config=clip_text, vision_config=clip_vision, projection_dim=16)
        return hf.CLIPModel(cfg)

    def siglip() -> nn.Module:
        cfg = hf.SiglipConfig(text_config=clip_text, vision_config=clip_vision)
        return hf.SiglipModel(cfg)

    def text_and_pixels() -> tuple[tuple, dict]:
        return (), {"input_ids": _ids(1), "pixel_values": randn(1, 3, 32, 32, seed=2)}

    stages = {"depths": [1, 1], "hidden_sizes": [16, 32]}
    convnext = {**stages, "num_stages": 2}
    return {
        "hf_vit": (_model("ViTModel", "ViTConfig", **vit), _pixels()),
        "hf_deit": (_model("DeiTModel", "DeiTConfig", **vit), _pixels()),
        "hf_beit": (_model("BeitModel", "BeitConfig", **vit, use_relative_position_bias=True), _pixels()),
        "hf_dinov2": (_model("Dinov2Model", "Dinov2Config", **vit), _pixels()),
        "hf_vit_mae": (_model("ViTMAEModel", "ViTMAEConfig", **vit, mask_ratio=0.5), _pixels()),
        "hf_clip": (clip, text_and_pixels),
        "hf_siglip": (siglip, text_and_pixels),
        "hf_swin": (
            _model(
                "SwinModel",
                "SwinConfig",
                image_size=32,
                patch_size=4,
                embed_dim=16,
                depths=[1, 1],
                num_heads=[1, 2],
                window_size=4,
            ),
            _pixels(),
        ),
        "hf_convnext": (_model("ConvNextModel", "ConvNextConfig", **convnext), _pixels()),
        "hf_convnextv2": (_model("ConvNextV2Model", "ConvNextV2Config", **convnext), _pixels()),
        "hf_resnet": (_model("ResNetModel", "ResNetConfig", embedding_size=16, **stages), _pixels()),
        "hf_regnet": (_model("RegNetModel", "RegNetConfig", embedding_size=16, **stages, groups_width=8), _pixels()),
        "hf_segformer": (
            _model(
                "SegformerModel",
                "SegformerConfig",
                num_encoder_blocks=2,
                depths=[1, 1],
                sr_ratios=[2, 1],
                hidden_sizes=[16, 32],
                num_attention_heads=[1, 2],
                patch_sizes=[7, 3],
                strides=[4, 2],
                mlp_ratios=[2, 2],
            ),
            _pixels(),
        ),
        "hf_mobilevit": (
            _model(
                "MobileViTModel",
                "MobileViTConfig",
                image_size=32,
                hidden_sizes=[16, 24, 32],
                neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32],
            ),
            _pixels(),
        ),
    }


def audio() -> dict[str, Spec]:
    w2v = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": (16, 16, 16),
        "conv_kernel": (10, 3, 3),
        "conv_stride": (5, 2, 2),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
    }
    wave: Inputs = lambda: ((randn(1, 400, seed=1),), {})  # noqa: E731
    return {
        "hf_wav2vec2": (_model("Wav2Vec2Model", "Wav2Vec2Config", **w2v), wave),
        "hf_hubert": (_model("HubertModel", "HubertConfig", **w2v), wave),
    }


FAMILIES: dict[str, Callable[[], dict[str, Spec]]] = {
    "hf-decoder": decoders,
    "hf-encoder": encoders,
    "hf-seq2seq": seq2seq,
    "hf-vision": vision,
    "hf-audio": audio,
}
