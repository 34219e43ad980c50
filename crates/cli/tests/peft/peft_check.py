"""Cross-checks Kiln's LoRA adapters against Hugging Face PEFT itself (by hand, not in CI:
torch is a multi-gigabyte install). With `pip install torch transformers peft`:

    kiln export smollm2 --format safetensors --type f32 --out hf
    # PEFT makes an adapter (random A and B, rank 4, rsLoRA, all seven projections) ...
    python peft_check.py make hf peft-adapter "The capital of France is"
    # ... which Kiln must continue the same way, greedily:
    kiln generate --model hf --adapter peft-adapter --greedy --max-tokens 16 "The capital of France is"
    kiln generate --model peft-adapter --greedy --max-tokens 16 "The capital of France is"

    # A Kiln run's adapter, loaded by PEFT, must answer a chat message as the run does:
    kiln finetune --from hf --dataset fine-foods-reviews --lora-rank 4 --max-len 96 \
        --max-train 16 --max-valid 8 --max-test 8 --skip-base --epochs 1 --lr 3e-3 --out run
    python peft_check.py chat hf run/adapter "Write a haiku about tea."
    echo "Write a haiku about tea." | kiln chat --model run --greedy --max-tokens 8

Modes: `make HF OUT PROMPT` (PEFT attaches and saves a random adapter, prints its greedy
continuation of PROMPT), `plain HF ADAPTER PROMPT` (PEFT loads ADAPTER, greedy continuation),
`chat HF ADAPTER MESSAGE` (PEFT loads ADAPTER, or none for `-`; greedy reply through the chat
template). Each prints one JSON string: the generated text.
"""
import json
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

mode, hf, adapter, text = sys.argv[1:5]
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(hf)
model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
if mode == "make":
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        use_rslora=True,
        init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    # init_lora_weights=False draws B too; scaled down, the update is visible but sane.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.05)
    model.save_pretrained(adapter)
elif adapter != "-":
    model = PeftModel.from_pretrained(model, adapter)
model.eval()
if mode == "chat":
    ids = tok.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    new = 8
else:
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    new = 16
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=new, do_sample=False)
print(json.dumps(tok.decode(out[0][ids.shape[1]:], skip_special_tokens=True)))
