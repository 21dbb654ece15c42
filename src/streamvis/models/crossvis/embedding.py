"""Instance-embedding losses: CrossVIS's global balanced embedding, and a pairwise alternative.

- `GlobalEmbeddingLoss` (official CrossVIS, paper section 3.3): every training identity owns a
  learned proxy (a row of the Linear `cls`, named as in the official checkpoint). An embedding is
  L2-normalized, scaled by emb_scale = sqrt(2) * log(nID - 1), scored against all proxies and
  classified with a sigmoid focal loss against one_hot(id - 1) (or a softmax cross-entropy).
- `PairwiseEmbeddingLoss` (ablation): no proxies; the key frame's embeddings are contrasted with the
  reference frame's, quasi-dense style, using only the identities present in the pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from streamvis.models.losses import FOCAL_ALPHA, FOCAL_GAMMA, sigmoid_focal_loss

# official: CrossVIS self.nID (YouTube-VIS 2019 train identities) and the 0.01 prior of `cls.bias`
NUM_IDENTITIES_YTVIS19 = 3774
IDENTITY_PRIOR_PROB = 0.01


def embedding_scale(num_identities: int) -> float:
    """Scale of the normalized embedding, sqrt(2) * log(nID - 1) (official emb_scale, from JDE)."""
    if num_identities < 3:
        raise ValueError(f"num_identities must be >= 3 for sqrt(2)*log(nID-1) > 0, got {num_identities}")
    return math.sqrt(2) * math.log(num_identities - 1)


class GlobalEmbeddingLoss(nn.Module):
    """Global balanced embedding loss over identity proxies (official CrossVIS re-ID loss).

    Args:
        num_identities: nID, the number of identity proxies; ids are 1..nID.
        embedding_dim: D, the embedding size.
        loss_type: "focal" (official: sigmoid focal, summed over all nID classes, / #samples) or
            "ce" (softmax cross-entropy, mean over samples).
        alpha, gamma: focal-loss parameters.
        prior_prob: the proxies' bias starts at -log((1 - p) / p) (official: 0.01).
    """

    def __init__(
        self,
        *,
        num_identities: int,
        embedding_dim: int,
        loss_type: str = "focal",
        alpha: float = FOCAL_ALPHA,
        gamma: float = FOCAL_GAMMA,
        prior_prob: float = IDENTITY_PRIOR_PROB,
    ):
        super().__init__()
        if loss_type not in ("focal", "ce"):
            raise ValueError(f"unknown embedding loss {loss_type!r}; expected 'focal' or 'ce'")
        self.num_identities = num_identities
        self.loss_type = loss_type
        self.alpha, self.gamma = alpha, gamma
        self.emb_scale = embedding_scale(num_identities)
        # the identity proxies; named `cls` as in the official checkpoint
        self.cls = nn.Linear(embedding_dim, num_identities, bias=True)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, embeddings: torch.Tensor, identity_ids: torch.Tensor) -> torch.Tensor:
        """Loss of the positive locations' embeddings.

        Args:
            embeddings: (P, D) raw embeddings (reid head output), P may be 0.
            identity_ids: (P,) int, 1-based global identity ids.

        Returns:
            Scalar loss (0, still attached to the graph, when P = 0).
        """
        if len(embeddings) == 0:
            return embeddings.sum() * 0 + self.cls.weight.sum() * 0
        targets = identity_ids.long() - 1
        if targets.min() < 0 or targets.max() >= self.num_identities:
            raise ValueError(
                f"identity ids must lie in 1..{self.num_identities}; got {int(identity_ids.min())}.."
                f"{int(identity_ids.max())} (set num_identities to the dataset's identity count)"
            )
        logits = self.cls(self.emb_scale * F.normalize(embeddings)).float()  # (P, nID)
        if self.loss_type == "ce":
            return F.cross_entropy(logits, targets, reduction="mean")
        one_hot = torch.zeros_like(logits).scatter_(1, targets.view(-1, 1), 1)
        loss = sigmoid_focal_loss(logits, one_hot, alpha=self.alpha, gamma=self.gamma, reduction="sum")
        return loss / len(embeddings)


class PairwiseEmbeddingLoss(nn.Module):
    """Multi-positive contrastive loss between the two frames' positives (quasi-dense style).

    For an anchor i of one frame, the positives P(i) are the other frame's locations of the same
    identity and the negatives N(i) all the other frame's locations of other identities. With cosine
    similarities s / temperature, the loss is log(1 + sum_{p in P(i)} sum_{n in N(i)} exp(s_in - s_ip)),
    averaged over the anchors of both directions that have at least one positive and one negative.

    Args:
        temperature: divides the cosine similarity.
    """

    def __init__(self, *, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(
        self,
        key_embeddings: torch.Tensor,
        key_ids: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Args: embeddings (P0, D) / (P1, D) raw; ids (P0,) / (P1,) identity ids. Returns a scalar."""
        zero = key_embeddings.sum() * 0 + ref_embeddings.sum() * 0
        if len(key_embeddings) == 0 or len(ref_embeddings) == 0:
            return zero
        sim = F.normalize(key_embeddings) @ F.normalize(ref_embeddings).t() / self.temperature  # (P0, P1)
        same = key_ids.view(-1, 1) == ref_ids.view(1, -1)
        losses = torch.cat([_multi_positive_loss(sim, same), _multi_positive_loss(sim.t(), same.t())])
        if len(losses) == 0:
            return zero
        return losses.mean()


def _multi_positive_loss(sim: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """(A, B) similarities and same-identity mask -> (A',) losses of the valid anchors."""
    valid = same.any(dim=1) & (~same).any(dim=1)
    sim, same = sim[valid], same[valid]
    neg_lse = sim.masked_fill(same, float("-inf")).logsumexp(dim=1)  # log sum_n exp(s_n)
    pos_lse = (-sim).masked_fill(~same, float("-inf")).logsumexp(dim=1)  # log sum_p exp(-s_p)
    return F.softplus(neg_lse + pos_lse)
