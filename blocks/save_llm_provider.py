"""Save an LLMProvider block on the Prefect server, from options or the environment.

    python blocks/save_llm_provider.py my-endpoint --base-url https://... --model gpt-4o-mini

The API key is read from the environment variable named by --api-key-env (default
OPENAI_API_KEY), never from the command line, so it stays out of shell history.
Goals use the block with ``GOALFLOW_LLM_BLOCK=my-endpoint`` or the flow parameter
``llm_block``.
"""

from __future__ import annotations

import argparse
import os

from pydantic import SecretStr

from goalflow.orchestration.blocks import LLMProvider


def main() -> None:
    parser = argparse.ArgumentParser(description="Save a goalflow LLMProvider block.")
    parser.add_argument("name", help="Block name, e.g. 'openai' or 'local-vllm'.")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    parser.add_argument("--model", default=os.environ.get("GOALFLOW_MODEL", "gpt-4o-mini"))
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    args = parser.parse_args()
    key = os.environ.get(args.api_key_env)
    block = LLMProvider(
        base_url=args.base_url, model=args.model, api_key=SecretStr(key) if key else None
    )
    block.save(args.name, overwrite=True)
    print(f"saved LLMProvider block {args.name!r} (model {args.model})")


if __name__ == "__main__":
    main()
