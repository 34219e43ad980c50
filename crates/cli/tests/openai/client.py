"""Calls `kiln serve` with the official `openai` Python package (chat plain and streaming,
text completions, embeddings) and prints what it got as one JSON object, for
crates/cli/tests/serve.rs to compare with `kiln generate` and `kiln embed`."""

import json
import sys

import openai

base_url, chat_model, embed_model, prompt, question, max_tokens = sys.argv[1:7]
max_tokens = int(max_tokens)
texts = json.loads(sys.argv[7])
client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=600)

chat = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": question}],
    temperature=0,
    max_tokens=max_tokens,
)
stream = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": question}],
    temperature=0,
    max_tokens=max_tokens,
    stream=True,
)
pieces = []
finish = None
for chunk in stream:
    delta = chunk.choices[0].delta.content
    if delta:
        pieces.append(delta)
    if chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
completion = client.completions.create(
    model=chat_model, prompt=prompt, temperature=0, max_tokens=max_tokens
)
# The client asks for base64 unless told otherwise; ask both ways.
embedded = client.embeddings.create(model=embed_model, input=texts)
as_floats = client.embeddings.create(model=embed_model, input=texts, encoding_format="float")
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    missing = None
except openai.NotFoundError as e:
    missing = e.status_code
try:
    client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "x"}], temperature=5)
    invalid = None
except openai.UnprocessableEntityError as e:
    invalid = e.status_code
print(
    json.dumps(
        {
            "openai_version": openai.__version__,
            "chat": chat.choices[0].message.content,
            "chat_finish": chat.choices[0].finish_reason,
            "chat_usage": [chat.usage.prompt_tokens, chat.usage.completion_tokens],
            "stream": "".join(pieces),
            "stream_finish": finish,
            "stream_chunks": len(pieces),
            "completion": completion.choices[0].text,
            "embeddings": [d.embedding for d in embedded.data],
            "embeddings_float": [d.embedding for d in as_floats.data],
            "models": sorted(m.id for m in client.models.list().data),
            "missing_model_status": missing,
            "invalid_status": invalid,
        }
    )
)
